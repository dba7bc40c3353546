"""Scaling statistics fit on training rows only, persisted with the names they belong to.

`standard` centres on the mean and divides by the standard deviation; `robust` uses the median
and the inter-quartile range (/1.349, so both agree on Gaussian data). Scaled values are clipped
to +-clip. Targets get a scale only (their centre stays at zero, as returns do).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from spreadcast.config import ScaleConfig


@dataclass
class Scaler:
    method: str
    clip: float
    features: list[str]
    center: np.ndarray
    scale: np.ndarray
    targets: list[str]
    target_scale: np.ndarray

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale a (rows x features) matrix in registry order; NaN stays NaN."""
        return self.transform_block(np.array(values, dtype=np.float64), slice(None))

    def transform_parquet(self, path, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Scale the registry's columns of a parquet file a block of columns at a time.

        Returns float32 values with missing cells at 0 and a uint8 missing mask, so peak memory
        stays near the size of the two outputs rather than several float64 copies of the table.
        """
        n = pl.scan_parquet(path).select(pl.len()).collect().item()
        values = np.empty((n, len(self.features)), dtype=np.float32)
        missing = np.empty((n, len(self.features)), dtype=np.uint8)
        for start in range(0, len(self.features), chunk):
            cols = slice(start, start + chunk)
            block = pl.read_parquet(path, columns=self.features[cols]).to_numpy().astype(np.float64, copy=False)
            values[:, cols], missing[:, cols] = self.model_inputs(block, cols)
        return values, missing

    def model_inputs(self, block: np.ndarray, cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Scaled values with missing cells at 0, and the missing mask: what the models read,
        made here alone for training (windows export) and serving alike."""
        block = self.transform_block(np.array(block, dtype=np.float64), cols)
        gap = np.isnan(block)
        block[gap] = 0.0
        return block, gap

    def transform_block(self, block: np.ndarray, cols: slice) -> np.ndarray:
        block = (block - self.center[cols]) / self.scale[cols]
        return np.clip(block, -self.clip, self.clip, out=block)

    def subset(self, names: list[str]) -> "Scaler":
        """The statistics of some of the features, in the order given."""
        index = {f: i for i, f in enumerate(self.features)}
        missing = [f for f in names if f not in index]
        if missing:
            raise KeyError(f"feature {missing[0]!r} has no scaling statistics")
        cols = np.array([index[f] for f in names], dtype=np.int64)
        return Scaler(method=self.method, clip=self.clip, features=list(names), center=self.center[cols],
                      scale=self.scale[cols], targets=self.targets, target_scale=self.target_scale)

    def to_dict(self) -> dict:
        return {"method": self.method, "clip": self.clip, "features": self.features,
                "center": self.center.tolist(), "scale": self.scale.tolist(),
                "targets": self.targets, "target_scale": self.target_scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(method=d["method"], clip=float(d["clip"]), features=list(d["features"]),
                   center=np.asarray(d["center"], dtype=np.float64), scale=np.asarray(d["scale"], dtype=np.float64),
                   targets=list(d["targets"]), target_scale=np.asarray(d["target_scale"], dtype=np.float64))


def _safe(scale: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)


def fit(features: np.ndarray, names: list[str], labels: np.ndarray, targets: list[str], cfg: ScaleConfig) -> Scaler:
    """Fit on training rows (rows x features, rows x targets)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-missing columns: handled by _safe
        if cfg.method == "robust":
            center = np.nanmedian(features, axis=0)
            q75, q25 = np.nanpercentile(features, [75, 25], axis=0)
            scale = (q75 - q25) / 1.349
        else:
            center = np.nanmean(features, axis=0)
            scale = np.nanstd(features, axis=0)
        target_scale = np.sqrt(np.nanmean(labels**2, axis=0))
    return Scaler(method=cfg.method, clip=cfg.clip, features=list(names),
                  center=np.nan_to_num(center), scale=_safe(scale),
                  targets=list(targets), target_scale=_safe(target_scale))
