"""The columns each rex report offers, and their kinds: what a partner contract may select.

A contract maps its own column names (Lloyd's CRS names, snake_case, OED fields …) onto these
with ODCS `transformLogic`; lint checks every mapping against this catalog, and the contract's
logical types against the kinds here. Kinds:

* `string`, `date`, `integer`, `timestamp`: as they say;
* `money`: DECIMAL(38,9) amounts in the row's currency, rounded only at export;
* `decimal`: exact non-money decimals (shares, fractions, rates), never rounded to minor units.

`period` is the contract's reporting period of the row's booked date: `2026-03` for a monthly
contract, `2026-Q1` for a quarterly one.
"""
from __future__ import annotations

from dataclasses import dataclass

# ODCS logical types a column of each kind may be declared as.
LOGICAL_TYPES = {
    "string": ("string",),
    "date": ("date", "string"),
    "integer": ("integer", "number", "string"),
    "timestamp": ("timestamp", "string"),
    "money": ("number",),
    "decimal": ("number",),
}


@dataclass(frozen=True)
class ReportColumn:
    name: str
    kind: str
    description: str
    currency_column: str | None = None  # for money: the column naming its currency


@dataclass(frozen=True)
class ReportDefinition:
    kind: str  # premium_bordereau | claims_bordereau | exposure | oed_location | oed_account
    description: str
    columns: tuple[ReportColumn, ...]
    built: bool  # False while rex does not produce it yet (the contract may still declare it)

    def column(self, name: str) -> ReportColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, kind: str, description: str, currency: str | None = None) -> ReportColumn:
    if kind == "money" and currency is None:
        currency = "original_currency"
    return ReportColumn(name, kind, description, currency)


# Added when a period is published (transforms/publications.py).
PUBLICATION_COLUMNS = (
    _c("entry_type", "string", "ORIGINAL, or ADJUSTMENT: a late change to a closed period booked in this one"),
    _c("adjusts_period", "string", "For an adjustment, the closed period it corrects"),
    _c("version", "integer", "The version of the period this row was published in (1, 2, …)"),
)

# Added per partner, from its contract's settlement currency and FX rate-date rule (transforms/fx.py).
SETTLEMENT_COLUMNS = (
    _c("settlement_currency", "string", "ISO 4217 currency the partner settles in (its contract's)"),
    _c("fx_rate", "decimal", "Units of settlement currency per unit of original currency (via USD, 12 places)"),
    _c("fx_rate_date", "date", "Date of the ledger rates used (booked date or period end, per contract)"),
)

PREMIUM_BORDEREAU = ReportDefinition(
    "premium_bordereau",
    "One row per premium transaction × participating reinsurer: 100% and share amounts.",
    (
        _c("reinsurer_id", "string", "The reinsurer (partner) the row is ceded to"),
        _c("treaty_id", "string", "Treaty the risk is ceded under"),
        _c("umr", "string", "Unique Market Reference of the treaty"),
        _c("treaty_type", "string", "QUOTA_SHARE or SURPLUS"),
        _c("period", "string", "Reporting period of the booked date, per the contract's frequency"),
        _c("policy_id", "string", "Ledger policy id"),
        _c("policy_number", "string", "Policy (certificate) number"),
        _c("insured_name", "string", "Insured's name (masked where the contract says so)"),
        _c("risk_country", "string", "ISO 3166 country of the insured risk"),
        _c("line_of_business", "string", "PROPERTY, ENGINEERING or ENERGY"),
        _c("transaction_id", "string", "Ledger premium transaction id"),
        _c("transaction_type", "string", "NEW, RENEWAL, ENDORSEMENT or CANCELLATION"),
        _c("effective_date", "date", "Date the premium transaction takes effect"),
        _c("booked_date", "date", "Date the transaction was booked (decides the period)"),
        _c("original_currency", "string", "ISO 4217 currency of the transaction"),
        _c("sum_insured", "money", "Sum insured of the policy (in-force TIV of its locations)"),
        _c("ceded_fraction", "decimal", "Share of the risk ceded to the treaty (cession rate or surplus fraction)"),
        _c("gross_premium_100", "money", "Gross premium at 100%"),
        _c("tax_100", "money", "Premium taxes at 100%"),
        _c("ceded_premium_100", "money", "Premium ceded to the treaty at 100% of the treaty"),
        _c("share_pct", "decimal", "The reinsurer's share of the treaty (0-1)"),
        _c("share_premium", "money", "The reinsurer's share of the ceded premium"),
        _c("commission_rate", "decimal", "Ceding commission rate of the treaty"),
        _c("share_commission", "money", "Ceding commission on the reinsurer's share"),
        _c("share_tax", "money", "Taxes on the reinsurer's share"),
        _c("share_net_premium", "money", "Share premium less commission and tax"),
        _c("ledger_commit_timestamp", "timestamp", "When the ledger committed the transaction (orders repeats)"),
        *SETTLEMENT_COLUMNS,
        _c("settlement_share_premium", "money", "share_premium in the settlement currency", "settlement_currency"),
        _c("settlement_share_commission", "money", "share_commission in the settlement currency", "settlement_currency"),
        _c("settlement_share_tax", "money", "share_tax in the settlement currency", "settlement_currency"),
        _c("settlement_share_net_premium", "money", "share_net_premium in the settlement currency",
           "settlement_currency"),
        *PUBLICATION_COLUMNS,
    ),
    built=True,
)

CLAIMS_BORDEREAU = ReportDefinition(
    "claims_bordereau",
    "One row per claim × reinsurer × period: paid, outstanding and incurred, 100% and share.",
    (
        _c("reinsurer_id", "string", "The reinsurer (partner) the row is ceded to"),
        _c("treaty_id", "string", "Treaty the claim is ceded under"),
        _c("umr", "string", "Unique Market Reference of the treaty"),
        _c("treaty_type", "string", "QUOTA_SHARE, SURPLUS or XOL_PER_RISK"),
        _c("frequency", "string", "monthly or quarterly: the period grid the row belongs to"),
        _c("period", "string", "Reporting period, per the contract's frequency"),
        _c("period_start", "date", "First day of the period"),
        _c("period_end", "date", "Last day of the period"),
        _c("claim_id", "string", "Ledger claim id"),
        _c("policy_id", "string", "Ledger policy id"),
        _c("policy_number", "string", "Policy (certificate) number"),
        _c("insured_name", "string", "Insured's name (masked where the contract says so)"),
        _c("risk_country", "string", "ISO 3166 country of the insured risk"),
        _c("line_of_business", "string", "Line of business"),
        _c("location_id", "string", "Location the loss occurred at"),
        _c("loss_date", "date", "Date of loss"),
        _c("reported_date", "date", "Date the claim was first advised"),
        _c("peril", "string", "OED peril code of the cause of loss"),
        _c("cat_event_code", "string", "Catastrophe event code, if any"),
        _c("claim_status", "string", "OPEN, CLOSED or REOPENED at period end"),
        _c("original_currency", "string", "ISO 4217 currency of the claim"),
        _c("last_booked_date", "date", "Booked date of the claim's last movement up to the period end"),
        _c("paid_this_period_100", "money", "Paid in the period at 100%"),
        _c("paid_to_date_100", "money", "Paid to date at 100%"),
        _c("outstanding_reserve_100", "money", "Outstanding reserve at period end at 100%"),
        _c("incurred_100", "money", "Paid to date plus outstanding at 100%"),
        _c("ceded_fraction", "decimal", "Share of the loss ceded (proportional treaties; empty for XoL)"),
        _c("ceded_paid_this_period_100", "money", "Ceded to the treaty at 100%: paid in the period"),
        _c("ceded_paid_to_date_100", "money", "Ceded to the treaty at 100%: paid to date"),
        _c("ceded_outstanding_100", "money", "Ceded to the treaty at 100%: outstanding"),
        _c("ceded_incurred_100", "money", "Ceded to the treaty at 100%: incurred"),
        _c("xol_recovery_100", "money", "Recovery under the per-risk excess of loss layer at 100% (incurred)"),
        _c("share_pct", "decimal", "The reinsurer's share of the treaty"),
        _c("paid_this_period_share", "money", "Reinsurer's share of the ceded paid in the period"),
        _c("paid_to_date_share", "money", "Reinsurer's share of the ceded paid to date"),
        _c("outstanding_share", "money", "Reinsurer's share of the ceded outstanding"),
        _c("incurred_share", "money", "Reinsurer's share of the ceded incurred"),
        *SETTLEMENT_COLUMNS,
        _c("settlement_paid_this_period_share", "money", "paid_this_period_share in the settlement currency",
           "settlement_currency"),
        _c("settlement_paid_to_date_share", "money", "paid_to_date_share in the settlement currency",
           "settlement_currency"),
        _c("settlement_outstanding_share", "money", "outstanding_share in the settlement currency",
           "settlement_currency"),
        _c("settlement_incurred_share", "money", "incurred_share in the settlement currency", "settlement_currency"),
        *PUBLICATION_COLUMNS,
    ),
    built=False,
)

EXPOSURE = ReportDefinition(
    "exposure",
    "In-force sums insured per reinsurer × treaty × peril × country × zone × line of business × currency, "
    "as of a date, at 100% and ceded (transforms/exposure.py). A location counts once per peril it covers.",
    (
        _c("reinsurer_id", "string", "The reinsurer (partner)"),
        _c("treaty_id", "string", "Treaty"),
        _c("as_of_date", "date", "Date the exposure is in force on"),
        _c("peril", "string", "OED peril code"),
        _c("country", "string", "ISO 3166 country of the locations"),
        _c("zone", "string", "Accumulation zone"),
        _c("line_of_business", "string", "Line of business"),
        _c("currency", "string", "ISO 4217 currency of the sums insured"),
        _c("location_count", "integer", "Locations in force"),
        _c("building_tiv_100", "money", "Building TIV at 100%", "currency"),
        _c("contents_tiv_100", "money", "Contents TIV at 100%", "currency"),
        _c("bi_tiv_100", "money", "Business interruption TIV at 100%", "currency"),
        _c("total_tiv_100", "money", "Total TIV at 100%", "currency"),
        _c("ceded_tiv_100", "money", "TIV ceded to the treaty at 100% of the treaty", "currency"),
        _c("share_pct", "decimal", "The reinsurer's share of the treaty"),
        _c("ceded_tiv_share", "money", "The reinsurer's share of the ceded TIV", "currency"),
    ),
    built=False,
)

EXPOSURE_TOP_LOCATIONS = ReportDefinition(
    "exposure_top_locations",
    "Per reinsurer × treaty, the in-force locations with the largest ceded TIV as of a date, ranked "
    "(ties by policy id, location id).",
    (
        _c("reinsurer_id", "string", "The reinsurer (partner)"),
        _c("treaty_id", "string", "Treaty"),
        _c("as_of_date", "date", "Date the exposure is in force on"),
        _c("rank", "integer", "1 for the location with the largest ceded TIV of the treaty"),
        _c("policy_id", "string", "Ledger policy id"),
        _c("location_id", "string", "Ledger location id"),
        _c("country", "string", "ISO 3166 country of the location"),
        _c("zone", "string", "Accumulation zone"),
        _c("currency", "string", "ISO 4217 currency of the sums insured"),
        _c("total_tiv_100", "money", "Total TIV of the location at 100%", "currency"),
        _c("ceded_tiv_100", "money", "TIV of the location ceded to the treaty at 100% of the treaty", "currency"),
        _c("share_pct", "decimal", "The reinsurer's share of the treaty"),
        _c("ceded_tiv_share", "money", "The reinsurer's share of the ceded TIV", "currency"),
    ),
    built=False,
)

# Central OED rows lead with these; the OED files themselves carry only the OED fields.
_OED_CENTRAL = (
    ("reinsurer_id", "string", "The reinsurer (partner) the record is ceded to (not an OED field)"),
    ("treaty_id", "string", "Treaty the risk is ceded under (not an OED field)"),
    ("as_of_date", "date", "Date the risk is in force on (not an OED field)"),
)

OED_LOCATION = ReportDefinition(
    "oed_location",
    "OED v3 location file of the ceded in-force risks (field names are OED's own; transforms/oed.py).",
    tuple(
        _c(name, kind, desc, "LocCurrency" if kind == "money" else None)
        for name, kind, desc in (
            *_OED_CENTRAL,
            ("PortNumber", "string", "Portfolio: the treaty"),
            ("AccNumber", "string", "Account: the policy id"),
            ("LocNumber", "string", "Location id"),
            ("CountryCode", "string", "ISO 3166 country"),
            ("Latitude", "decimal", "Latitude"),
            ("Longitude", "decimal", "Longitude"),
            ("LocPerilsCovered", "string", "OED peril codes, ';'-separated"),
            ("OccupancyCode", "integer", "OED occupancy code"),
            ("ConstructionCode", "integer", "OED construction code"),
            ("BuildingTIV", "money", "Building TIV at 100%"),
            ("OtherTIV", "money", "Other structures TIV (0: the ledger holds none)"),
            ("ContentsTIV", "money", "Contents TIV at 100%"),
            ("BITIV", "money", "Business interruption TIV at 100%"),
            ("LocCurrency", "string", "ISO 4217 currency of the TIVs"),
            ("GeogScheme1", "string", "Geography scheme of GeogName1 (XZONE: rex's accumulation zones)"),
            ("GeogName1", "string", "Accumulation zone"),
            ("OEDVersion", "string", "OED version the record follows (3.4.1)"),
        )
    ),
    built=False,
)

OED_ACCOUNT = ReportDefinition(
    "oed_account",
    "OED v3 account file: one row per ceded in-force policy (field names are OED's own; transforms/oed.py).",
    tuple(
        _c(name, kind, desc, "AccCurrency" if kind == "money" else None)
        for name, kind, desc in (
            *_OED_CENTRAL,
            ("PortNumber", "string", "Portfolio: the treaty"),
            ("AccNumber", "string", "Account: the policy id"),
            ("AccName", "string", "Insured's name (masked where the contract says so)"),
            ("AccCurrency", "string", "ISO 4217 currency"),
            ("PolNumber", "string", "Policy number"),
            ("PolPerilsCovered", "string", "OED peril codes the policy's locations cover, ';'-separated"),
            ("PolInceptionDate", "date", "Policy inception"),
            ("PolExpiryDate", "date", "Policy expiry (the cancellation date for a cancelled policy)"),
            ("LOB", "string", "Line of business"),
            ("OEDVersion", "string", "OED version the record follows (3.4.1)"),
        )
    ),
    built=False,
)

REPORTS: dict[str, ReportDefinition] = {
    r.kind: r for r in (PREMIUM_BORDEREAU, CLAIMS_BORDEREAU, EXPOSURE, EXPOSURE_TOP_LOCATIONS, OED_LOCATION,
                         OED_ACCOUNT)
}


def report(kind: str) -> ReportDefinition:
    try:
        return REPORTS[kind]
    except KeyError:
        raise KeyError(f"unknown report {kind!r}; rex reports are {', '.join(REPORTS)}") from None
