import pytest

from spreadcast import config
from spreadcast.config import ConfigError


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_load():
    loaded = config.load_all(config.Path(__file__).resolve().parents[1] / "params.yaml")
    assert loaded["train"].huber_delta == 0.2
    assert loaded["data"].lags == [1, 2, 3, 4]


def test_unknown_key_names_section_and_key(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key \(allowed: d_model"):
        config.load("train", path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        config.load("train", write(tmp_path, "trian:\n  lr: 0.1\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer, got 'ten'"):
        config.load("train", write(tmp_path, "train:\n  epochs: ten\n"))
    with pytest.raises(ConfigError, match=r"train\.amp: expected true or false"):
        config.load("train", write(tmp_path, "train:\n  amp: 1\n"))


def test_out_of_range_and_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.n_heads: must divide d_model \(64\)"):
        config.load("train", write(tmp_path, "train:\n  n_heads: 5\n"))
    with pytest.raises(ConfigError, match=r"scale\.method: 'minmax' is not one of \['standard', 'robust'\]"):
        config.load("scale", write(tmp_path, "scale:\n  method: minmax\n"))
    with pytest.raises(ConfigError, match=r"data\.lags: lags must be in 1\.\.4"):
        config.load("data", write(tmp_path, "data:\n  lags: [1, 5]\n"))
    with pytest.raises(ConfigError, match=r"windows\.embargo: must be at least max lag \+ 1"):
        config.load("windows", write(tmp_path, "windows:\n  embargo: 2\n"))
    with pytest.raises(ConfigError, match=r"prescreen\.min_abs_ic: must be 0 with rank_by: random"):
        config.load("prescreen", write(tmp_path, "prescreen:\n  rank_by: random\n  min_abs_ic: 0.01\n"))
    with pytest.raises(ConfigError, match=r"prescreen\.ic_blocks: must be at least 1"):
        config.load("prescreen", write(tmp_path, "prescreen:\n  ic_blocks: 0\n"))


def test_int_accepted_for_float(tmp_path):
    assert config.load("blend", write(tmp_path, "blend:\n  max_weight: 1\n")).max_weight == 1.0
    assert config.load("blend", write(tmp_path, "blend:\n  ridge_alphas: [1, 10]\n")).ridge_alphas == [1.0, 10.0]


def test_params_hash_changes_with_values():
    a = config.TrainConfig()
    b = config.TrainConfig(lr=2e-3)
    assert config.params_hash(a) == config.params_hash(config.TrainConfig())
    assert config.params_hash(a) != config.params_hash(b)
