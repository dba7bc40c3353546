"""The embedded synthetic markets: a dataset in the competition's layout, plus its oracle.

A factor model with fat-tailed (Student-t) shocks, on which any mix of five mechanisms (the
zoo) plants a learnable drift; `params.yaml` (`synthetic`) sets the strength of each:

- lead-lag (`signal_strength`): latent signals s[t] = phi s[t-1] + sqrt(1 - phi^2) eta[t], each
  driven by one FX "leader" whose published return is sigma eta[t]; every other asset drifts
  with a one-day delay: strength * sigma_i * B_i . s[t-1];
- levels (`level_strength`): published stationary columns RATE_k, AR(1) with persistence psi;
  asset drift strength * sigma_i * C_i . x[t-1];
- mean reversion (`reversion_strength` kappa): each asset's log price reverts to its trailing
  exponential mean m (half-life `reversion_halflife`): drift -kappa * (log P[t-1] - m[t-1]),
  so every target pair's spread reverts to its own trailing mean;
- drift (`drift_strength`): a persistent mean return per asset, strength * sigma_i * mu_i, where a
  constant ranking of the targets is the best forecast;
- none: every strength 0 (the null market).

Around them: volatility episodes (`vol_shock_rate`), a regime switch that scales every
mechanism by `regime_factor` from `regime_day` on (weakens, turns off or flips it, so a model
fit on the early years is wrong later), market holidays, a late-starting JPX market, and any
number of columns, targets and lags.

Every mechanism is linear in a state published by day t (signals, levels, each asset's
deviation from its trailing mean), so the conditional expectation of a label is exact: the
expected returns E[r[t+k] | t] follow by a short recursion over k (`_expected_returns`) and a
label is their sum over its days. The oracle folder (outside the dataset folder the pipeline
reads) holds that expectation for every day (`ceiling.parquet`) and the true labels of the test
days (`answers.parquet`). On a day an asset's market is closed, the reversion oracle knows that
day's unpublished price: at a 3% holiday rate that puts it a hair above the attainable best.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import polars.selectors  # noqa: F401  (pl.selectors)

from spreadcast.config import SyntheticConfig
from spreadcast.data.layout import DATE, LABEL_DATE, SCORED
from spreadcast.data.targets import Target, compute_labels, publication_date
from spreadcast.io import atomic_dir, sha256_file, write_json

LME_METALS = ["AH", "CA", "PB", "ZS"]
JPX_CONTRACTS = ["Gold_Mini", "Gold_Rolling-Spot", "Gold_Standard", "Platinum_Mini",
                 "Platinum_Standard", "RSS3_Rubber", "Silver_Standard", "Palladium_Standard",
                 "Corn_Standard", "Soybean_Standard", "Crude_Standard", "Gasoline_Standard"]
JPX_FIELDS = ["Open", "High", "Low", "Close", "Volume", "settlement_price", "open_interest"]
US_TICKERS = """ACWI AEM AG AGG ALB AMP BCS BKR BND BNDX BP BSV CAT CCJ CLF COP CVE CVX DE DBC
EEM EFA EMB ENB EOG EWJ EWT EWY EWZ FCX FNV FXI GDX GDXJ GLD GOLD HAL HES HL HYG IAU IEF IEMG
IVV IWM JNK KGC KMI LQD LYB MBB MPC MS NEM NUE NUGT OIH OKE OXY PAAS RIO RSP RY SCCO SHEL SHY
SLB SLV SPIB SPTL SPYV STLD TD TECK TIP TRGP URA VALE VCIT VCSH VEA VGIT VGK VGLT VGSH VT VTV
VWO VXUS VYM WMB WPM X XLB XLE XOM YINN AA BHP DOW MOS NTR PPLT SIL SLX TLT USO""".split()
US_FIELDS = ["open", "high", "low", "close", "volume"]
FX_PAIRS = """AUDJPY AUDUSD CADJPY CHFJPY EURAUD EURGBP EURJPY EURUSD GBPAUD GBPJPY GBPUSD NZDJPY
NZDUSD USDCHF USDJPY ZARJPY ZARUSD NOKUSD NOKEUR CADUSD AUDNZD EURCHF EURCAD AUDCAD GBPCHF
EURNZD AUDCHF GBPNZD GBPCAD CADCHF NZDCAD NZDCHF ZAREUR NOKGBP NOKCHF ZARCHF NOKJPY ZARGBP""".split()

N_FACTORS = 3
FUTURE_DAYS = 5  # hidden days after the last published one, so every test label exists


@dataclass
class Instrument:
    market: str          # LME, JPX, US or FX
    name: str            # column stem
    close_column: str    # the price column targets use


@dataclass
class Market:
    train: pl.DataFrame
    test: pl.DataFrame
    train_labels: pl.DataFrame
    target_pairs: pl.DataFrame
    lagged: dict[int, pl.DataFrame]
    ceiling: pl.DataFrame
    answers: pl.DataFrame
    leaders: list[str]


def _names(stems: list[str], n: int, prefix: str) -> list[str]:
    return stems[:n] + [f"{prefix}{i}" for i in range(len(stems), n)]


def _instruments(cfg: SyntheticConfig) -> list[Instrument]:
    out = [Instrument("LME", m, f"LME_{m}_Close") for m in LME_METALS[: cfg.n_lme]]
    out += [Instrument("JPX", c, f"JPX_{c}_Futures_Close") for c in _names(JPX_CONTRACTS, cfg.n_jpx, "Contract")]
    out += [Instrument("US", t, f"US_Stock_{t}_adj_close") for t in _names(US_TICKERS, cfg.n_us, "TCK")]
    out += [Instrument("FX", p, f"FX_{p}") for p in _names(FX_PAIRS, cfg.n_fx, "CUR")]
    return out


def _student_t(rng: np.random.Generator, df: float, size) -> np.ndarray:
    """Unit-variance Student-t draws: fat tails at a known scale."""
    return rng.standard_t(df, size=size) / np.sqrt(df / (df - 2.0))


MECHANISMS = ("lead_lag", "levels", "drift", "reversion")


def generate(cfg: SyntheticConfig, ceiling_of: str | None = None) -> Market:
    """The market of `cfg`. `ceiling_of` (one of MECHANISMS) makes `Market.ceiling` that
    mechanism's part of the expectation alone (`_expected_returns`; the parts add up to the
    ceiling), the market itself unchanged."""
    if ceiling_of is not None and ceiling_of not in MECHANISMS:
        raise ValueError(f"ceiling_of={ceiling_of!r}: not a mechanism; choose from {', '.join(MECHANISMS)}")
    rng = np.random.default_rng(cfg.seed)
    # Draws of the mechanisms beyond lead-lag come from their own stream, so adding one leaves
    # every other draw (and the lead-lag market of the same seed) unchanged.
    extra = np.random.default_rng([cfg.seed, 1])
    inst = _instruments(cfg)
    n_inst = len(inst)
    test_start = cfg.n_train_days - cfg.overlap_days
    n_published = test_start + cfg.n_test_days
    n_days = max(n_published, cfg.n_train_days) + FUTURE_DAYS
    markets = np.array([i.market for i in inst])

    # Per-instrument scales and exposures.
    sigma = np.where(markets == "FX", rng.uniform(0.003, 0.008, n_inst), rng.uniform(0.008, 0.022, n_inst))
    market_mean = {"LME": [0.8, 0.3, 0.0], "JPX": [0.6, 0.2, 0.4], "US": [1.0, -0.2, 0.0], "FX": [0.1, 0.0, 0.6]}
    loadings = np.stack([np.asarray(market_mean[m]) + 0.35 * rng.standard_normal(N_FACTORS) for m in markets])
    factor_scale = 0.6 * sigma[:, None]
    fx_idx = np.flatnonzero(markets == "FX")
    n_signals = min(cfg.n_signals, len(fx_idx))
    leaders = rng.choice(fx_idx, size=n_signals, replace=False)
    exposure = rng.standard_normal((n_inst, n_signals)) / np.sqrt(n_signals)
    exposure[leaders] = 0.0

    # Latent signals driven by the leaders' innovations.
    eta = rng.standard_normal((n_days, n_signals))
    phi = cfg.signal_persistence
    s = np.zeros_like(eta)
    for t in range(1, n_days):
        s[t] = phi * s[t - 1] + np.sqrt(1.0 - phi**2) * eta[t]

    factors = _student_t(rng, cfg.tail_df, (n_days, N_FACTORS)) * 0.8
    idio = _student_t(rng, cfg.tail_df, (n_days, n_inst))
    mech = _Mechanisms.draw(cfg, extra, n_days, sigma, leaders)
    drift = np.zeros((n_days, n_inst))
    drift[1:] = cfg.signal_strength * sigma * (s[:-1] @ exposure.T)
    if mech.levels.shape[1]:
        drift[1:] += mech.levels[:-1] @ (cfg.level_strength * sigma[:, None] * mech.level_load).T
    if cfg.drift_strength > 0:
        drift[1:] += mech.mean
    if cfg.regime_day > 0:
        drift *= mech.regime[:, None]
    common = (factors @ loadings.T) * factor_scale.T
    own = sigma * idio
    if cfg.vol_shock_rate > 0:
        common, own = common * mech.vol[:, None], own * mech.vol[:, None]
    returns = drift + common + own
    returns[:, leaders] = sigma[leaders] * eta
    returns[0] = 0.0
    if cfg.reversion_strength > 0:
        mech.deviation = _revert(returns, mech.kappa, mech.decay, mech.regime)
    base = np.where(markets == "FX", rng.uniform(0.05, 150.0, n_inst), rng.uniform(5.0, 20000.0, n_inst))
    log_close = np.log(base) + np.cumsum(returns, axis=0)

    # Trading calendars: each market closes on its own holidays; FX trades every day.
    open_ = np.ones((n_days, n_inst), dtype=bool)
    for m in ("LME", "JPX", "US"):
        holidays = rng.random(n_days) < cfg.holiday_rate
        open_[np.ix_(holidays, markets == m)] = False
    us_idx = np.flatnonzero(markets == "US")
    late = rng.choice(us_idx, size=max(1, len(us_idx) // 30), replace=False)
    for i in late:
        open_[: rng.integers(50, max(51, cfg.n_train_days // 2)), i] = False
    stopped = rng.choice(np.setdiff1d(us_idx, late))
    open_[rng.integers(cfg.n_train_days // 2, cfg.n_train_days):, stopped] = False
    if cfg.late_start_days > 0:
        open_[: cfg.late_start_days, markets == "JPX"] = False

    columns = _price_columns(inst, log_close, sigma, open_, rng)
    for k in range(mech.levels.shape[1]):
        columns[f"RATE_{k + 1}"] = mech.levels[:, k].copy()
    close_cols = [i.close_column for i in inst]

    # Targets: per lag, a few single columns and many A - B spreads of closing prices.
    eligible = [c for k, c in enumerate(close_cols) if k != stopped]
    targets: list[Target] = []
    for lag in cfg.lags:
        for _ in range(cfg.targets_per_lag):
            name = f"target_{len(targets)}"
            if rng.random() < 0.05:
                targets.append(Target(name, lag, str(rng.choice(eligible)), None))
            else:
                a, b = rng.choice(eligible, size=2, replace=False)
                targets.append(Target(name, lag, str(a), str(b)))

    # Labels from observed prices (missing where a needed price is missing), on every day.
    observed_log = np.where(open_, log_close, np.nan)
    labels = compute_labels(observed_log, close_cols, targets)
    expected = _expected_returns(cfg, mech, sigma, exposure, s, max(cfg.lags) + 1, ceiling_of)
    ceiling = _ceiling(targets, close_cols, expected)

    feature_names = list(columns)
    frame = pl.DataFrame({DATE: np.arange(n_days, dtype=np.int64), **columns})
    train = frame.slice(0, cfg.n_train_days)
    test_dates = np.arange(test_start, n_published)
    test = frame.slice(test_start, cfg.n_test_days).with_columns(
        pl.Series(SCORED, np.arange(cfg.n_test_days) < cfg.n_scored_days))

    def label_frame(rows: np.ndarray, cols: list[int]) -> pl.DataFrame:
        return pl.DataFrame({DATE: rows.astype(np.int64),
                             **{targets[j].name: labels[rows, j] for j in cols}})

    all_cols = list(range(len(targets)))
    lagged = {}
    for lag in cfg.lags:
        cols = [j for j, t in enumerate(targets) if t.lag == lag]
        frame_k = label_frame(test_dates, cols)
        lagged[lag] = frame_k.with_columns(
            publication_date(pl.col(DATE), lag).alias(DATE), pl.col(DATE).alias(LABEL_DATE))
    return Market(
        train=train.select(DATE, *feature_names),
        test=test.select(DATE, *feature_names, SCORED),
        train_labels=label_frame(np.arange(cfg.n_train_days), all_cols),
        target_pairs=pl.DataFrame({
            "target": [t.name for t in targets], "lag": [t.lag for t in targets],
            "pair": [t.a if t.b is None else f"{t.a} - {t.b}" for t in targets]}),
        lagged=lagged,
        ceiling=pl.DataFrame({DATE: np.arange(n_published, dtype=np.int64),
                              **{t.name: ceiling[:n_published, j] for j, t in enumerate(targets)}}),
        answers=label_frame(test_dates, all_cols),
        leaders=[close_cols[i] for i in leaders],
    )


@dataclass
class _Mechanisms:
    """The zoo's states and loadings beyond lead-lag (all drawn from the `extra` stream)."""

    levels: np.ndarray        # (days, n_levels) published AR(1) series
    level_load: np.ndarray    # (instruments, n_levels)
    mean: np.ndarray          # (instruments,) persistent mean return
    kappa: np.ndarray         # (instruments,) reversion speed (0 for the leaders)
    decay: float              # of the trailing mean, per day
    regime: np.ndarray        # (days,) multiplier of every mechanism
    vol: np.ndarray           # (days,) multiplier of the shocks
    deviation: np.ndarray | None = None   # (days, instruments) log price minus its trailing mean

    @staticmethod
    def draw(cfg: SyntheticConfig, rng: np.random.Generator, n_days: int, sigma: np.ndarray,
             leaders: np.ndarray) -> "_Mechanisms":
        n_inst = sigma.size
        psi = cfg.level_persistence
        shocks = rng.standard_normal((n_days, cfg.n_levels))
        levels = np.zeros_like(shocks)
        levels[0] = shocks[0]
        for t in range(1, n_days):
            levels[t] = psi * levels[t - 1] + np.sqrt(1.0 - psi**2) * shocks[t]
        level_load = rng.standard_normal((n_inst, cfg.n_levels)) / np.sqrt(max(cfg.n_levels, 1))
        level_load[leaders] = 0.0
        mean = cfg.drift_strength * sigma * rng.standard_normal(n_inst)
        mean[leaders] = 0.0
        kappa = np.full(n_inst, cfg.reversion_strength)
        kappa[leaders] = 0.0
        regime = np.ones(n_days)
        if cfg.regime_day > 0:
            regime[cfg.regime_day:] = cfg.regime_factor
        vol = np.ones(n_days)
        starts = rng.random(n_days) < cfg.vol_shock_rate
        ends = rng.random(n_days) < 1.0 / 20.0          # episodes last 20 days on average
        shocked = False
        for t in range(n_days):
            shocked = (shocked and not ends[t]) or starts[t]
            vol[t] = cfg.vol_shock_size if shocked else 1.0
        return _Mechanisms(levels, level_load, mean, kappa, 0.5 ** (1.0 / cfg.reversion_halflife), regime, vol)


def _revert(returns: np.ndarray, kappa: np.ndarray, decay: float, regime: np.ndarray) -> np.ndarray:
    """Add the mean-reversion drift to `returns` in place; the deviations d[t] of each log price
    from its trailing mean m[t] = decay m[t-1] + (1 - decay) log P[t], which obey
    d[t] = decay (d[t-1] + r[t])."""
    deviation = np.zeros_like(returns)
    for t in range(1, returns.shape[0]):
        returns[t] -= regime[t] * kappa * deviation[t - 1]
        deviation[t] = decay * (deviation[t - 1] + returns[t])
    return deviation


def _expected_returns(cfg: SyntheticConfig, mech: _Mechanisms, sigma: np.ndarray, exposure: np.ndarray,
                      s: np.ndarray, horizon: int, only: str | None = None) -> list[np.ndarray]:
    """E[r[t+k] | day t] for k = 1..horizon, each (days, instruments).

    The drift of day t+k is the regime of t+k times: lead-lag on s[t+k-1] (expected
    phi^(k-1) s[t]), levels on x[t+k-1] (psi^(k-1) x[t]), the mean, and the reversion on the
    expected deviation of day t+k-1, which the expected returns themselves move forward.

    The recursion is linear in its four sources (the signals, the levels, the mean and the
    deviation of day t), so with `only` (one of MECHANISMS) it is run on that source alone, the
    reversion of what the source moves included: the four parts add up to the whole."""
    n_days = s.shape[0]
    on = (lambda name: True) if only is None else (lambda name: name == only)   # noqa: E731
    zero = np.zeros((n_days, sigma.size))
    lead = s @ (cfg.signal_strength * sigma[:, None] * exposure).T if on("lead_lag") else zero
    level = mech.levels @ (cfg.level_strength * sigma[:, None] * mech.level_load).T if on("levels") else zero
    mean = mech.mean if cfg.drift_strength > 0 and on("drift") else np.zeros_like(sigma)
    deviation = mech.deviation if mech.deviation is not None and on("reversion") else zero
    padded = np.concatenate([mech.regime, np.full(horizon, mech.regime[-1])])
    out = []
    for k in range(1, horizon + 1):
        g = padded[k:k + n_days, None]
        e = g * (lead * cfg.signal_persistence ** (k - 1) + level * cfg.level_persistence ** (k - 1) + mean
                 - mech.kappa * deviation)
        deviation = mech.decay * (deviation + e)
        out.append(e)
    return out


def _ceiling(targets: list[Target], close_cols: list[str], expected: list[np.ndarray]) -> np.ndarray:
    """E[label | day t] per target: the expected returns of days t+2..t+lag+1, A minus B."""
    index = {c: i for i, c in enumerate(close_cols)}
    n_days = expected[0].shape[0]
    out = np.empty((n_days, len(targets)))
    for j, t in enumerate(targets):
        cols = [index[t.a]] + ([] if t.b is None else [index[t.b]])
        signs = np.array([1.0, -1.0][:len(cols)])
        out[:, j] = sum(expected[k - 1][:, cols] @ signs for k in range(2, t.lag + 2))
    return out


def _price_columns(inst, log_close, sigma, open_, rng) -> dict[str, np.ndarray]:
    """Observed columns in the competition's families, grouped by field as it does."""
    n_days = log_close.shape[0]
    close = np.exp(log_close)
    gap = np.exp(0.3 * sigma * rng.standard_normal(close.shape))
    prev = np.vstack([close[:1], close[:-1]])
    open_px = prev * gap
    wick = sigma * np.abs(rng.standard_normal((2, *close.shape)))
    high = np.maximum(open_px, close) * np.exp(0.5 * wick[0])
    low = np.minimum(open_px, close) * np.exp(-0.5 * wick[1])
    abs_ret = np.abs(np.diff(log_close, axis=0, prepend=log_close[:1])) / sigma
    base_volume = rng.uniform(7.0, 14.0, len(inst))
    noise = np.zeros_like(close)
    shocks = 0.3 * rng.standard_normal(close.shape)
    for t in range(1, n_days):
        noise[t] = 0.8 * noise[t - 1] + shocks[t]
    volume = np.round(np.exp(base_volume + noise + 0.25 * abs_ret))
    interest = np.round(np.exp(base_volume + 1.0 + np.cumsum(0.02 * rng.standard_normal(close.shape), axis=0)))
    settle = close * np.exp(0.0005 * rng.standard_normal(close.shape))

    def masked(values, i):
        return np.where(open_[:, i], values[:, i], np.nan)

    cols: dict[str, np.ndarray] = {}
    by_market = {m: [(k, x) for k, x in enumerate(inst) if x.market == m] for m in ("LME", "JPX", "US", "FX")}
    for k, x in by_market["LME"]:
        cols[x.close_column] = masked(close, k)
    jpx_source = {"Open": open_px, "High": high, "Low": low, "Close": close, "Volume": volume,
                  "settlement_price": settle, "open_interest": interest}
    for field in JPX_FIELDS:
        for k, x in by_market["JPX"]:
            cols[f"JPX_{x.name}_Futures_{field}"] = masked(jpx_source[field], k)
    us_source = {"open": open_px, "high": high, "low": low, "close": close, "volume": volume}
    for field in US_FIELDS:
        for k, x in by_market["US"]:
            cols[f"US_Stock_{x.name}_adj_{field}"] = masked(us_source[field], k)
    for k, x in by_market["FX"]:
        cols[x.close_column] = masked(close, k)
    return cols


def write(market: Market, dataset_dir: str | Path, oracle_dir: str | Path, cfg: SyntheticConfig) -> dict:
    """Write the dataset folder and the oracle folder, each atomically."""
    def csv(frame: pl.DataFrame, path: Path) -> None:
        # missing cells are empty, as in the competition files (polars would write "NaN")
        frame.with_columns(pl.selectors.float().fill_nan(None)).write_csv(path)

    with atomic_dir(dataset_dir) as tmp:
        csv(market.train, tmp / "train.csv")
        csv(market.train_labels, tmp / "train_labels.csv")
        csv(market.target_pairs, tmp / "target_pairs.csv")
        csv(market.test, tmp / "test.csv")
        (tmp / "lagged_test_labels").mkdir()
        for lag, frame in market.lagged.items():
            csv(frame, tmp / "lagged_test_labels" / f"test_labels_lag_{lag}.csv")
        fingerprint = {name: sha256_file(tmp / name) for name in ("train.csv", "test.csv", "target_pairs.csv")}
    summary = {
        "train_days": market.train.height, "test_days": market.test.height,
        "scored_days": int(market.test[SCORED].sum()), "features": market.train.width - 1,
        "targets": market.target_pairs.height, "leaders": market.leaders,
        "signal_strength": cfg.signal_strength, "signal_persistence": cfg.signal_persistence,
        "mechanisms": {name: strength for name, strength in (
            ("lead_lag", cfg.signal_strength), ("levels", cfg.level_strength),
            ("reversion", cfg.reversion_strength), ("drift", cfg.drift_strength)) if strength > 0},
        "dataset_fingerprint": fingerprint,
    }
    with atomic_dir(oracle_dir) as tmp:
        market.ceiling.write_parquet(tmp / "ceiling.parquet")
        market.answers.write_parquet(tmp / "answers.parquet")
        write_json(tmp / "meta.json", summary)
    return summary
