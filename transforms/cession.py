"""Proportional cession (DESIGN.md §8) as SQL expressions over exact decimals.

Quota share: ceded = gross × CessionRate.
Surplus:     ceded fraction = min(max(S − R, 0), L·R) / S, for sum insured S, retention R, L lines.
Share:       a reinsurer's amount = ceded × SharePct.

DuckDB divides decimals into DOUBLE, and money never passes through a float here: the surplus
fraction is an integer quotient in units of 1e-9 (rounded half up), so every amount stays a
DECIMAL(38,9) and `retained = gross − ceded` holds exactly.
"""
from __future__ import annotations

MONEY = "DECIMAL(38,9)"
_UNITS = "1000000000"  # 1e9: DECIMAL(38,9) <-> integer units


def money(expr: str) -> str:
    """Round an exact product back to the money type (9 places, half away from zero)."""
    return f"CAST({expr} AS {MONEY})"


def surplus_fraction(sum_insured: str, retention: str, lines: str) -> str:
    """min(max(S − R, 0), L·R) / S to 9 decimal places, without floating point."""
    ceded_si = f"least(greatest({sum_insured} - {retention}, 0), {lines} * {retention})"
    num = f"CAST({money(ceded_si)} * {_UNITS} AS HUGEINT)"
    den = f"CAST({money(sum_insured)} * {_UNITS} AS HUGEINT)"
    quotient = f"(({num}) * {_UNITS} + ({den}) // 2) // ({den})"
    return (
        f"CASE WHEN {sum_insured} IS NULL OR {sum_insured} <= 0 THEN CAST(0 AS {MONEY}) "
        f"ELSE CAST(CAST({quotient} AS DECIMAL(38,0)) * CAST(0.000000001 AS DECIMAL(10,9)) AS {MONEY}) END"
    )


def ceded_fraction(treaty_type: str, cession_rate: str, sum_insured: str, retention: str, lines: str) -> str:
    """The share of a risk ceded to a proportional treaty; NULL for non-proportional treaties."""
    return (
        f"CASE {treaty_type} "
        f"WHEN 'QUOTA_SHARE' THEN CAST({cession_rate} AS {MONEY}) "
        f"WHEN 'SURPLUS' THEN {surplus_fraction(sum_insured, retention, lines)} "
        f"END"
    )
