"""Plain-text tables for command output (Markdown, so they paste into docs as they are)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table; floats to 4 significant digits, pipes escaped."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")
