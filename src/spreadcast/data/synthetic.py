"""The embedded synthetic market: a dataset in the competition's layout, plus its oracle.

The market is a factor model with fat-tailed (Student-t) shocks and a planted, learnable
cross-asset signal:

    s[t]      = phi * s[t-1] + sqrt(1 - phi^2) * eta[t]            latent signals (S of them)
    r_lead[t] = sigma_lead * eta[t]                                one FX "leader" per signal
    r_i[t]    = strength * sigma_i * B_i . s[t-1] + L_i . F[t] + sigma_i * e_i[t]

so each signal is an exponentially weighted sum of its leader's published returns, and the
drift of every other asset follows it with a one-day delay. Because
E[s[t+m] | data up to t] = phi^m s[t], the conditional expectation of a label is exact:

    E[target(t, lag, A - B) | data up to t] = strength * (sigma_A B_A - sigma_B B_B) . s[t]
                                              * sum_{m=1..lag} phi^m

The oracle folder (outside the dataset folder the pipeline reads) holds that expectation for
every day (`ceiling.parquet`) and the true labels of the test days (`answers.parquet`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import polars.selectors  # noqa: F401  (pl.selectors)

from spreadcast.config import SyntheticConfig
from spreadcast.data.layout import DATE, LABEL_DATE, SCORED
from spreadcast.data.targets import Target, compute_labels
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


def generate(cfg: SyntheticConfig) -> Market:
    rng = np.random.default_rng(cfg.seed)
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

    factors = _student_t(rng, 4.0, (n_days, N_FACTORS)) * 0.8
    idio = _student_t(rng, 4.0, (n_days, n_inst))
    drift = np.zeros((n_days, n_inst))
    drift[1:] = cfg.signal_strength * sigma * (s[:-1] @ exposure.T)
    returns = drift + (factors @ loadings.T) * factor_scale.T + sigma * idio
    returns[:, leaders] = sigma[leaders] * eta
    returns[0] = 0.0
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

    columns = _price_columns(inst, log_close, sigma, open_, rng)
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
    ceiling = _ceiling(targets, close_cols, cfg, sigma, exposure, s)

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
            (pl.col(DATE) + lag + 1).alias(DATE), pl.col(DATE).alias(LABEL_DATE))
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


def _ceiling(targets, close_cols, cfg, sigma, exposure, s) -> np.ndarray:
    phi = cfg.signal_persistence
    index = {c: i for i, c in enumerate(close_cols)}
    loading = cfg.signal_strength * sigma[:, None] * exposure      # (instruments, signals)
    out = np.empty((s.shape[0], len(targets)))
    for j, t in enumerate(targets):
        w = loading[index[t.a]] - (0.0 if t.b is None else loading[index[t.b]])
        out[:, j] = (s @ w) * sum(phi**m for m in range(1, t.lag + 1))
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
        "dataset_fingerprint": fingerprint,
    }
    with atomic_dir(oracle_dir) as tmp:
        market.ceiling.write_parquet(tmp / "ceiling.parquet")
        market.answers.write_parquet(tmp / "answers.parquet")
        write_json(tmp / "meta.json", summary)
    return summary
