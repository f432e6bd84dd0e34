"""The seeded book: a deterministic synthetic reinsurance ledger (DESIGN.md §5).

`generate_book` plays an insurer's ledger forward day by day and yields its transactions in
commit order: reference data first (reinsurers, treaties with their participations, daily FX
rates), then policies bound with their locations and premium, endorsements, renewals and
cancellations, and claims moving through every claim transaction type, some of them caused by
catastrophe events. One `LedgerTransaction` is one Spanner transaction; `seed_files` writes a
book as change-record files and `seed_spanner` commits it to Spanner, so both paths carry the
same rows and, since reports use business dates only, yield the same reports.

Why the book looks the way it does:
* Every date in it is a business date derived from the simulated day, never a wall clock.
* Money is `Decimal`, rounded to the currency's minor units once, when it is booked.
* Only integer draws, `random()` and Decimal arithmetic are used (no libm-based draws such as
  `gauss`), and no set or hash order is ever iterated, so the same arguments give the same
  book on every machine.
* Updates carry the full row, so NEW_ROW change records carry full rows; deletes touch only
  leaf rows (the DDL says ON DELETE NO ACTION): a location removed by endorsement and a claim
  transaction booked in error.
* A few scripted "showcase" lifecycles on the first policies make sure even a small book
  (e.g. 50 policies over 30 days) holds every transaction type.
"""
from __future__ import annotations

import calendar
import hashlib
import heapq
import random
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable, Iterator

from transforms.currencies import minor_units
from transforms.ledger_schema import ledger_tables


@dataclass(frozen=True)
class Mutation:
    table: str
    op: str  # "insert" | "update" | "delete"
    row: dict  # every column (DDL order) for insert/update; only the key columns for delete


@dataclass(frozen=True)
class LedgerTransaction:
    tag: str  # the Spanner transaction tag, e.g. "seed:policy-bind"
    mutations: tuple[Mutation, ...]
    day: int = 0  # the simulated business day it was booked on (0 = the book's first day)
    desk: int = 0  # the underwriting desk that booked it (see `book_desks`)

    def record_groups(self) -> list[tuple[str, str, list[Mutation]]]:
        """The transaction split as Spanner's change stream splits it into data change records:
        one per (table, mod type), in order of first appearance, each with all its mods."""
        groups: dict[tuple[str, str], list[Mutation]] = {}
        for m in self.mutations:
            groups.setdefault((m.table, m.op), []).append(m)
        return [(table, op, muts) for (table, op), muts in groups.items()]


# ---------------------------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------------------------

REINSURERS = (
    ("alpine-re", "Alpine Re AG", "CH"),
    ("boreal-re", "Boreal Reinsurance Ltd", "GB"),
    ("coral-re", "Coral Re SE", "DE"),
    ("meridian-re", "Meridian Re Ltd", "BM"),
    ("sakura-re", "Sakura Re Co Ltd", "JP"),
)


@dataclass(frozen=True)
class _TreatyPlan:
    code: str
    name: str
    treaty_type: str
    line_of_business: str
    currency: str
    terms: dict  # the treaty's rating columns that are not NULL
    shares: tuple[tuple[str, str], ...]  # (ReinsurerId, SharePct)


# Each plan is written once per underwriting year the book touches. Shares sum to 1 for fully
# placed treaties; the risk XL is 90% placed, so 10% stays with the cedent.
TREATY_PLANS = (
    _TreatyPlan("QS-PROP-USD", "Property Quota Share", "QUOTA_SHARE", "PROPERTY", "USD",
                {"CessionRate": "0.40", "CommissionRate": "0.30"},
                (("alpine-re", "0.40"), ("boreal-re", "0.35"), ("coral-re", "0.25"))),
    _TreatyPlan("SP-PROP-EUR", "Property First Surplus", "SURPLUS", "PROPERTY", "EUR",
                {"Retention": "2500000", "Lines": 4, "CommissionRate": "0.275"},
                (("alpine-re", "0.50"), ("coral-re", "0.30"), ("meridian-re", "0.20"))),
    _TreatyPlan("XL-PROP-GBP", "Property Per Risk Excess of Loss", "XOL_PER_RISK", "PROPERTY", "GBP",
                {"Attachment": "1000000", "Limit": "4000000"},
                (("boreal-re", "0.50"), ("meridian-re", "0.40"))),
    _TreatyPlan("QS-ENG-JPY", "Engineering Quota Share", "QUOTA_SHARE", "ENGINEERING", "JPY",
                {"CessionRate": "0.50", "CommissionRate": "0.325"},
                (("sakura-re", "0.60"), ("alpine-re", "0.40"))),
)

# USD per unit on the book's first day, the largest daily move in basis points (0 = pegged),
# and the quantum the rate is published with.
FX_START = {
    "USD": ("1", 0, "1"),
    "EUR": ("1.0850", 40, "0.000001"),
    "GBP": ("1.2700", 45, "0.000001"),
    "JPY": ("0.0067", 60, "0.000000001"),
    "CHF": ("1.1300", 35, "0.000001"),
    "BHD": ("2.659574", 0, "0.000001"),
}


@dataclass(frozen=True)
class _Zone:
    code: str  # CRESTA-like accumulation zone
    lat: float
    lon: float
    perils: tuple[str, ...]  # OED peril codes the zone's locations are covered for


@dataclass(frozen=True)
class _Country:
    code: str
    currency: str
    weight: int
    tax_rate: Decimal  # insurance premium tax on gross premium
    stems: tuple[str, ...]
    legal_forms: tuple[str, ...]
    zones: tuple[_Zone, ...]


COUNTRIES = (
    _Country("US", "USD", 30, Decimal("0"), ("Harbor Point", "Summit Ridge", "Lone Star", "Great Lakes",
                                    "Pacific Crest", "Bluewater", "Ironwood"), ("Inc.", "LLC", "Corp."),
             (_Zone("US-FL", 25.77, -80.19, ("WTC", "WSS", "OSF")),
              _Zone("US-TX", 29.76, -95.37, ("WTC", "WSS", "XHL", "XTD")),
              _Zone("US-CA", 34.05, -118.24, ("QEQ", "QFF", "BBF")),
              _Zone("US-NY", 40.71, -74.01, ("WTC", "WEC", "ORF")),
              _Zone("US-IL", 41.88, -87.63, ("XHL", "XTD", "ORF")))),
    _Country("GB", "GBP", 14, Decimal("0.12"), ("Thames", "Pennine", "Albion", "Kestrel", "Wessex"),
             ("Ltd", "plc"),
             (_Zone("GB-LON", 51.51, -0.13, ("WEC", "ORF", "OSF")),
              _Zone("GB-MAN", 53.48, -2.24, ("WEC", "ORF")),
              _Zone("GB-EDI", 55.95, -3.19, ("WEC", "OSF")))),
    _Country("DE", "EUR", 12, Decimal("0.19"), ("Rheinland", "Müller", "Hanse", "Nordstern", "Schwarzwald"),
             ("GmbH", "AG", "GmbH & Co. KG"),
             (_Zone("DE-20", 53.55, 9.99, ("WEC", "WSS", "ORF")),
              _Zone("DE-80", 48.14, 11.58, ("XHL", "ORF")),
              _Zone("DE-50", 50.94, 6.96, ("WEC", "ORF", "OSF")))),
    _Country("FR", "EUR", 8, Decimal("0.09"), ("Lumière", "Rhône", "Atlantique", "Provence"), ("SA", "SAS"),
             (_Zone("FR-75", 48.86, 2.35, ("WEC", "ORF")),
              _Zone("FR-13", 43.30, 5.37, ("WEC", "QEQ", "BBF")))),
    _Country("NL", "EUR", 5, Decimal("0.21"), ("Oranje", "Maas", "Zeeland"), ("B.V.", "N.V."),
             (_Zone("NL-ZH", 51.92, 4.48, ("WEC", "WSS", "ORF")),)),
    _Country("IT", "EUR", 5, Decimal("0.2225"), ("Lombarda", "Adriatica", "Toscana"), ("S.p.A.", "S.r.l."),
             (_Zone("IT-MI", 45.46, 9.19, ("XHL", "ORF", "QEQ")),
              _Zone("IT-NA", 40.85, 14.27, ("QEQ", "QFF")))),
    _Country("JP", "JPY", 12, Decimal("0"), ("Sakura", "Fujimi", "Hokuto", "Kansai", "Minato"),
             ("K.K.", "Co., Ltd."),
             (_Zone("JP-13", 35.68, 139.69, ("QEQ", "QFF", "QTS", "WTC")),
              _Zone("JP-27", 34.69, 135.50, ("QEQ", "WTC", "WSS")),
              _Zone("JP-23", 35.18, 136.91, ("QEQ", "WTC")))),
    _Country("CH", "CHF", 8, Decimal("0.05"), ("Alpstein", "Limmat", "Léman"), ("AG", "SA"),
             (_Zone("CH-ZH", 47.38, 8.54, ("WEC", "XHL", "ORF")),
              _Zone("CH-GE", 46.20, 6.14, ("WEC", "XHL")))),
    _Country("BH", "BHD", 4, Decimal("0.10"), ("Gulf Pearl", "Dilmun", "Al Seef"), ("B.S.C.", "W.L.L."),
             (_Zone("BH-13", 26.23, 50.59, ("OSF",)),)),
)

def treaty_territories(currency: str) -> str:
    """A seeded treaty covers the book's countries that trade in its currency (';'-separated)."""
    return ";".join(sorted(c.code for c in COUNTRIES if c.currency == currency))


# Insured's sector -> line of business and OED occupancy codes of its sites.
SECTORS = (
    ("Logistics", "PROPERTY", (1122,)),          # warehouse
    ("Foods", "PROPERTY", (1153, 1122)),         # food processing
    ("Chemicals", "PROPERTY", (1154,)),
    ("Hotels", "PROPERTY", (1115, 1116)),
    ("Retail", "PROPERTY", (1101, 1122)),
    ("Electronics", "PROPERTY", (1156,)),
    ("Textiles", "PROPERTY", (1152,)),
    ("Properties", "PROPERTY", (1104, 1100, 1050)),
    ("Steelworks", "PROPERTY", (1155,)),
    ("Construction", "ENGINEERING", (1157,)),
    ("Infrastructure", "ENGINEERING", (1157, 1150)),
    ("Refining", "ENERGY", (1158,)),             # outside every treaty
    ("Petrochemicals", "ENERGY", (1158, 1154)),
)
LOB_PREFIX = {"PROPERTY": "PRP", "ENGINEERING": "ENG", "ENERGY": "NRG"}
ANNUAL_RATE_BP = {"PROPERTY": (8, 40), "ENGINEERING": (15, 60), "ENERGY": (20, 80)}
CONSTRUCTION_CODES = (5050, 5100, 5150, 5200, 5201)  # OED: wood, masonry, concrete, steel, light metal
TIV_SCALE = {c: Decimal(v) for c, v in  # sums insured per USD of value, roughly
             (("USD", "1"), ("EUR", "0.9"), ("GBP", "0.8"), ("JPY", "150"), ("CHF", "0.9"), ("BHD", "0.4"))}
PERIL_NAMES = {
    "WTC": "Hurricane", "WSS": "Storm surge", "WEC": "Windstorm", "QEQ": "Earthquake",
    "QFF": "Fire following earthquake", "QTS": "Tsunami", "ORF": "River flood",
    "OSF": "Flash flood", "XHL": "Hail", "XTD": "Tornado", "BBF": "Wildfire",
}
DAMAGE = ("roof and cladding", "stock and contents", "machinery", "ground floor and basement",
          "racking and inventory", "electrical installations", "site works in progress")

PREMIUM_TYPES = ("NEW", "RENEWAL", "ENDORSEMENT", "CANCELLATION")
CLAIM_TRANSACTION_TYPES = ("OPEN", "RESERVE_CHANGE", "PAYMENT", "RECOVERY", "CLOSE", "REOPEN")

# Per-term odds of a policy event, the yearly odds of an attritional claim per location, and
# the odds that an expiring policy renews.
ENDORSE_ODDS, CANCEL_ODDS, RENEW_ODDS, CLAIM_FREQUENCY = 0.30, 0.05, 0.85, 0.10
MAX_INCEPTION_LAG = 14  # days between binding and inception
MAX_REPORT_LAG = 45  # days between loss and report (attritional claims)
# The first policies follow scripted lifecycles (see plan_showcase).
SHOWCASE_RENEWAL, SHOWCASE_ENDORSEMENTS, SHOWCASE_CLAIM = 1, 2, 3


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

_QUANTA = {c: Decimal(1).scaleb(-minor_units(c)) for c in FX_START}


def money(amount: Decimal, currency: str) -> Decimal:
    """An amount as booked: rounded half-up to the currency's minor units (JPY 0, BHD 3 …)."""
    return amount.quantize(_QUANTA[currency], ROUND_HALF_UP)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def add_months(d: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (the market's anniversary rule)."""
    year, month0 = divmod(d.month - 1 + months, 12)
    year += d.year
    last = _MONTH_DAYS[month0] + (month0 == 1 and calendar.isleap(year))
    return date(year, month0 + 1, min(d.day, last))


_PERCENT = tuple(Decimal(i) / 100 for i in range(201))


class _Weights:
    """Items with relative weights, cumulated once so each draw is one bisect."""

    def __init__(self, pairs: Iterable[tuple[object, float]]):
        self.items, self.cum, total = [], [], 0.0
        for item, weight in pairs:
            total += weight
            self.items.append(item)
            self.cum.append(total)
        self.total = total


class _Dice:
    """Draws built on `random()` alone: a fifth of the cost of randint/choice/choices (the book
    makes millions of draws) and just as reproducible."""

    def __init__(self, seed: int):
        self.random = random.Random(seed).random

    def int(self, lo: int, hi: int) -> int:
        return lo + int(self.random() * (hi - lo + 1))

    def pick(self, seq):
        return seq[int(self.random() * len(seq))]

    def weighted(self, weights: _Weights):
        return weights.items[bisect_right(weights.cum, self.random() * weights.total)]

    def pct(self, lo: int, hi: int) -> Decimal:
        return _PERCENT[self.int(lo, hi)]

    def sample(self, seq, k: int) -> list:
        pool = list(seq)
        for i in range(k):
            j = i + int(self.random() * (len(pool) - i))
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


def _row(table: str, **values) -> dict:
    """A full row; the keyword order must be the DDL column order, so fail loudly if not."""
    if tuple(values) != _COLUMNS[table]:
        raise ValueError(f"{table} row has columns {list(values)}, expected {list(_COLUMNS[table])}")
    return values


def _key(table: str, row: dict) -> dict:
    return {k: row[k] for k in _KEYS[table]}


_COUNTRY_WEIGHTS = _Weights((c, c.weight) for c in COUNTRIES)
_TERM_MONTHS = _Weights(((12, 85), (6, 8), (3, 5), (1, 2)))
_SITE_COUNTS = _Weights(zip((1, 2, 3, 4, 5, 6, 8, 12), (30, 20, 15, 10, 8, 7, 6, 4)))
_TIV_BANDS = _Weights((((250, 2_500), 55), ((2_500, 15_000), 35), ((15_000, 80_000), 10)))
_ENDORSEMENTS = _Weights((("tiv", 60), ("add", 25), ("remove", 15)))
_LOSS_BANDS = {False: _Weights((((1, 20), 70), ((20, 100), 25), ((100, 400), 5))),
               True: _Weights((((10, 80), 70), ((80, 250), 25), ((250, 600), 5)))}
_PAYMENT_COUNTS = _Weights(((1, 50), (2, 35), (3, 15)))
# Catastrophes strike zones in proportion to the business written there.
_ZONE_WEIGHTS = _Weights((z, c.weight / len(c.zones)) for c in COUNTRIES for z in c.zones)
_CAT_ATTEMPTS = 50
_COLUMNS = {name: tuple(t.column_names) for name, t in ledger_tables().items()}
_KEYS = {name: t.primary_key for name, t in ledger_tables().items()}


# ---------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------

@dataclass
class _Policy:
    row: dict
    locations: dict[str, dict]  # LocationId -> current full row
    rate: Decimal  # annual premium rate on total sum insured
    brokerage: Decimal
    tax_rate: Decimal
    term_months: int
    term_days: int | None = None  # a short-period term in days overrides term_months
    term: int = 0  # bumped at renewal, so events planned for an earlier term are dropped
    term_premium: list[Decimal] = field(default_factory=list)  # gross, commission, tax
    next_location: int = 1
    claimed: set[str] = field(default_factory=set)  # locations with an opened claim (membership only)

    def term_end(self, start: date) -> date:
        if self.term_days is not None:
            return start + timedelta(days=self.term_days)
        return add_months(start, self.term_months)


@dataclass
class _Claim:
    row: dict
    currency: str
    steps: list[tuple[str, int]]  # the remaining (step, delay in days) of its lifecycle
    reserve: Decimal
    paid: Decimal
    last_payment: dict | None = None
    in_error: dict | None = None  # a claim transaction booked in error, awaiting deletion


Event = Callable[..., "LedgerTransaction | None"]


@dataclass(frozen=True)
class BookDesk:
    """One underwriting desk of a book: a slice of its policies with a random stream of its own.

    A big book is simulated as independent desks so that they can be generated in parallel;
    desks share the reference data, FX rates and catastrophe plan, but never a policy, so
    merging their transactions by (day, desk) gives one valid ledger."""

    seed: int  # the book's seed
    index: int
    desks: int
    policies: int  # this desk's share of the book's policies
    first_serial: int  # policy serials of this desk start after this
    days: int
    start_date: date

    @property
    def rng_seed(self) -> int:
        return self.seed if self.index == 0 else _derived_seed("desk", self.seed, self.index)


DESK_POLICIES = 25_000  # a book gets one desk per this many policies (the unit of parallel work)
MAX_DESKS = 64


def _derived_seed(*parts) -> int:
    """A seed for a sub-stream, the same on every machine and Python (no hash())."""
    digest = hashlib.blake2b(":".join(["rex", *map(str, parts)]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def book_desks(seed: int, policies: int, days: int, start_date: date = date(2026, 1, 1),
               desk_policies: int = DESK_POLICIES) -> list[BookDesk]:
    """How a book splits into desks: a function of its arguments only, never of the machine."""
    if policies < 1 or days < 1:
        raise ValueError("a book needs at least one policy and one day")
    count = min(MAX_DESKS, -(-policies // desk_policies))
    shares = [policies // count + (1 if k < policies % count else 0) for k in range(count)]
    firsts = [sum(shares[:k]) for k in range(count)]
    return [BookDesk(seed, k, count, shares[k], firsts[k], days, start_date) for k in range(count)]


class _BookSimulator:
    """Plays one desk's ledger forward; each handler books one transaction (or nothing if moot)."""

    def __init__(self, desk: BookDesk):
        self.desk = desk
        self.rng = _Dice(desk.rng_seed)
        self.policy_count = desk.policies
        self.days = days = desk.days
        self.start = start = desk.start_date
        self.queue: list[tuple[int, int, Event, tuple]] = []
        self.seq = 0
        self.policies: dict[str, _Policy] = {}
        self.claims: dict[str, _Claim] = {}
        self.zone_sites: dict[str, list[tuple[str, str]]] = {}  # zone -> (PolicyId, LocationId)
        self.treaty_windows: dict[tuple[str, str], list[tuple[date, date, str]]] = {}
        self.counters = Counter()
        self.zero = {c: money(Decimal(0), c) for c in FX_START}
        self.dates = [start + timedelta(days=d) for d in range(days)]

    # -- scheduling ---------------------------------------------------------------------------
    def at(self, day: int, handler: Event, *args) -> None:
        """Plan an event; events beyond the book's last day never happen."""
        if day < self.days:
            self.seq += 1
            heapq.heappush(self.queue, (day, self.seq, handler, args))

    def day_of(self, d: date) -> int:
        return (d - self.start).days

    def date_of(self, day: int) -> date:
        if day < len(self.dates):
            return self.dates[day]
        return self.start + timedelta(days=day)

    def next_id(self, kind: str, width: int) -> str:
        """Ids interleave over desks (desk k of n numbers k+1, k+1+n, …), so they stay unique."""
        self.counters[kind] += 1
        number = (self.counters[kind] - 1) * self.desk.desks + self.desk.index + 1
        return f"{kind}-{number:0{width}d}"

    def run(self) -> Iterator[LedgerTransaction]:
        """Each day: that day's new business first, then the events falling due, in plan order.

        Desk 0 books the reference data and FX rates; every desk knows the treaties."""
        desk = self.desk.index
        reference = self.reference_data()
        if desk == 0:
            yield reference
            yield self.fx_rates()
        binds = self.bind_days()
        self.plan_cat_events()
        serial = self.desk.first_serial
        end = serial + len(binds)
        for day in range(self.days):
            while serial < end and binds[serial - self.desk.first_serial] == day:
                serial += 1
                txn = self.bind(day, serial)
                yield LedgerTransaction(txn.tag, txn.mutations, day, desk)
            while self.queue and self.queue[0][0] == day:
                _day, _seq, handler, args = heapq.heappop(self.queue)
                txn = handler(day, *args)
                if txn is not None:
                    yield LedgerTransaction(txn.tag, txn.mutations, day, desk)

    # -- reference data -----------------------------------------------------------------------
    def reference_data(self) -> LedgerTransaction:
        muts = [Mutation("Reinsurers", "insert", _row("Reinsurers", ReinsurerId=rid, Name=name, CountryCode=cc))
                for rid, name, cc in REINSURERS]
        last_inception = self.date_of(self.days - 1) + timedelta(days=MAX_INCEPTION_LAG)
        year = 0
        while add_months(self.start, 12 * year) <= last_inception:
            inception, expiry = add_months(self.start, 12 * year), add_months(self.start, 12 * (year + 1))
            for plan in TREATY_PLANS:
                muts.extend(self.treaty(plan, inception, expiry))
            year += 1
        return LedgerTransaction("seed:reference-data", tuple(muts))

    def treaty(self, plan: _TreatyPlan, inception: date, expiry: date) -> list[Mutation]:
        treaty_id = f"{plan.code}-{inception.year}"
        terms = {c: None for c in ("CessionRate", "Retention", "Lines", "Attachment", "Limit", "CommissionRate")}
        for column, value in plan.terms.items():
            terms[column] = value if isinstance(value, int) else Decimal(value)
        row = _row("Treaties", TreatyId=treaty_id, Umr=f"B0999{inception.year % 100:02d}{plan.code.replace('-', '')}",
                   Name=f"{plan.name} {plan.currency} {inception.year}", TreatyType=plan.treaty_type,
                   LineOfBusiness=plan.line_of_business, Currency=plan.currency,
                   InceptionDate=inception, ExpiryDate=expiry, **terms,
                   Territories=treaty_territories(plan.currency))
        self.treaty_windows.setdefault((plan.line_of_business, plan.currency), []).append(
            (inception, expiry, treaty_id))
        return [Mutation("Treaties", "insert", row)] + [
            Mutation("Participations", "insert",
                     _row("Participations", TreatyId=treaty_id, ReinsurerId=rid, SharePct=Decimal(share)))
            for rid, share in plan.shares
        ]

    def fx_rates(self) -> LedgerTransaction:
        """Daily rates as a bounded random walk in exact decimals (pegged currencies stay put)."""
        muts = []
        for currency, (first, max_bp, quantum) in FX_START.items():
            rate, q = Decimal(first), Decimal(quantum)
            for day in range(self.days):
                if day and max_bp:
                    rate = (rate * (1 + Decimal(self.rng.int(-max_bp, max_bp)) / 10000)).quantize(q)
                muts.append(Mutation("FxRates", "insert", _row(
                    "FxRates", Currency=currency, RateDate=self.date_of(day), UsdPerUnit=rate)))
        return LedgerTransaction("seed:fx-rates", tuple(muts))

    def treaty_for(self, lob: str, currency: str, inception: date) -> str | None:
        """The treaty a policy attaches to: risks attaching during the treaty's year."""
        for start, end, treaty_id in self.treaty_windows.get((lob, currency), ()):
            if start <= inception < end:
                return treaty_id
        return None

    # -- binding ------------------------------------------------------------------------------
    def bind_days(self) -> list[int]:
        """The day each policy is bound, spread over the book (weekdays busier); the showcase
        policies bind on day 0. Policy serials follow binding order."""
        weights = _Weights((d, 1.0 if self.date_of(d).weekday() < 5 else 0.15) for d in range(self.days))
        showcase = min(SHOWCASE_CLAIM, self.policy_count) if self.desk.index == 0 else 0
        return [0] * showcase + sorted(self.rng.weighted(weights) for _ in range(self.policy_count - showcase))

    def bind(self, day: int, serial: int) -> LedgerTransaction:
        rng = self.rng
        country = rng.weighted(_COUNTRY_WEIGHTS)
        sector, lob, occupancies = rng.pick(SECTORS)
        showcase = serial <= SHOWCASE_CLAIM
        inception = self.date_of(day) + timedelta(days=0 if showcase or rng.random() < 0.6
                                                  else rng.int(1, MAX_INCEPTION_LAG))
        term_months = rng.weighted(_TERM_MONTHS)
        policy_id = f"P-{serial:07d}"
        policy = _Policy(
            row={}, locations={}, rate=Decimal(rng.int(*ANNUAL_RATE_BP[lob])) / 10000,
            brokerage=Decimal(rng.pick((100, 125, 150, 175, 200))) / 1000,
            tax_rate=country.tax_rate, term_months=12 if showcase else term_months)
        if serial == SHOWCASE_RENEWAL:  # a short-period cover, so it ends inside the book
            policy.term_months, policy.term_days = 1, (None if self.days >= 62 else max(1, self.days // 2))
        policy.row = _row(
            "Policies", PolicyId=policy_id,
            PolicyNumber=f"{LOB_PREFIX[lob]}-{inception.year}-{serial:07d}",
            InsuredName=f"{rng.pick(country.stems)} {sector} {rng.pick(country.legal_forms)}",
            CountryCode=country.code, LineOfBusiness=lob, Currency=country.currency,
            InceptionDate=inception, ExpiryDate=policy.term_end(inception),
            TreatyId=self.treaty_for(lob, country.currency, inception), Status="BOUND")
        self.policies[policy_id] = policy
        count = max(rng.weighted(_SITE_COUNTS), 3 if serial == SHOWCASE_ENDORSEMENTS else 1)  # it removes one
        sites = [self.new_location(policy, country, occupancies) for _ in range(count)]
        premium = self.term_premium(policy, inception, "NEW", self.date_of(day))
        self.plan_term(policy, day, serial)
        return LedgerTransaction("seed:policy-bind", (
            Mutation("Policies", "insert", policy.row),
            *(Mutation("Locations", "insert", s) for s in sites),
            Mutation("PremiumTransactions", "insert", premium),
        ))

    def new_location(self, policy: _Policy, home: _Country, occupancies: tuple[int, ...]) -> dict:
        """A site, mostly in the insured's country; its sums insured in the policy currency."""
        rng = self.rng
        country = home if rng.random() < 0.9 else rng.pick(COUNTRIES)
        zone = rng.pick(country.zones)
        perils = [p for p in zone.perils if p not in ("ORF", "OSF") or rng.random() < 0.7] or [zone.perils[0]]
        currency = policy.row["Currency"]
        lo, hi = rng.weighted(_TIV_BANDS)
        building = money(Decimal(rng.int(lo, hi) * 1000) * TIV_SCALE[currency], currency)
        bi = money(building * rng.pct(10, 50), currency) if rng.random() < 0.75 else None
        policy_id = policy.row["PolicyId"]
        location_id = f"L-{policy_id[2:]}-{policy.next_location:02d}"
        policy.next_location += 1
        row = _row(
            "Locations", PolicyId=policy_id, LocationId=location_id, CountryCode=country.code,
            Zone=zone.code, Latitude=round(zone.lat + rng.random() * 0.6 - 0.3, 4),
            Longitude=round(zone.lon + rng.random() * 0.6 - 0.3, 4), PerilsCovered=";".join(perils),
            OccupancyCode=rng.pick(occupancies), ConstructionCode=rng.pick(CONSTRUCTION_CODES),
            BuildingTiv=building, ContentsTiv=money(building * rng.pct(10, 60), currency), BiTiv=bi)
        policy.locations[location_id] = row
        self.zone_sites.setdefault(zone.code, []).append((policy_id, location_id))
        return row

    # -- premium ------------------------------------------------------------------------------
    def premium_row(self, policy: _Policy, kind: str, effective: date, booked: date, gross: Decimal) -> dict:
        currency = policy.row["Currency"]
        gross = money(gross, currency)
        commission = money(gross * policy.brokerage, currency)
        tax = money(gross * policy.tax_rate, currency)
        if kind in ("NEW", "RENEWAL"):
            policy.term_premium = [gross, commission, tax]
        else:
            policy.term_premium = [a + b for a, b in zip(policy.term_premium, (gross, commission, tax))]
        return _row("PremiumTransactions", PolicyId=policy.row["PolicyId"], TransactionId=self.next_id("PT", 8),
                    TransactionType=kind, EffectiveDate=effective, BookedDate=booked, GrossPremium=gross,
                    CommissionAmount=commission, TaxAmount=tax, Currency=currency)

    def term_premium(self, policy: _Policy, inception: date, kind: str, booked: date) -> dict:
        years = Decimal((policy.term_end(inception) - inception).days) / 365
        return self.premium_row(policy, kind, inception, booked, self.total_tiv(policy) * policy.rate * years)

    @staticmethod
    def site_tiv(site: dict) -> Decimal:
        return site["BuildingTiv"] + site["ContentsTiv"] + (site["BiTiv"] or 0)

    def total_tiv(self, policy: _Policy) -> Decimal:
        return sum((self.site_tiv(s) for s in policy.locations.values()), Decimal(0))

    # -- the policy's term --------------------------------------------------------------------
    def plan_term(self, policy: _Policy, booked_day: int, serial: int) -> None:
        """Plan this term's events: endorsements, cancellation, claims and the renewal."""
        rng = self.rng
        first, last = self.day_of(policy.row["InceptionDate"]), self.day_of(policy.row["ExpiryDate"])
        policy_id, term = policy.row["PolicyId"], policy.term
        if serial <= SHOWCASE_CLAIM and term == 0:
            self.plan_showcase(policy, serial)
        else:
            lo = max(first, booked_day) + 1
            if rng.random() < ENDORSE_ODDS and lo < last:
                self.at(rng.int(lo, last - 1), self.endorse, policy_id, term, None)
            if rng.random() < CANCEL_ODDS and lo < last:
                self.at(rng.int(lo, last - 1), self.cancel, policy_id, term)
            years = (last - first) / 365
            for location_id in list(policy.locations):
                if rng.random() < CLAIM_FREQUENCY * years:
                    loss_day = rng.int(first, last - 1)
                    self.at(max(loss_day, booked_day) + rng.int(1, MAX_REPORT_LAG), self.open_claim,
                            policy_id, location_id, self.date_of(loss_day), None, None)
        self.at(last, self.renew, policy_id, term, serial == SHOWCASE_RENEWAL and term == 0)

    def plan_showcase(self, policy: _Policy, serial: int) -> None:
        """Scripted lifecycles, timed as fractions of the book, so small books hold every type."""
        policy_id, n = policy.row["PolicyId"], self.days
        if serial == SHOWCASE_RENEWAL:
            self.at(max(1, n * 3 // 10), self.endorse, policy_id, 0, "tiv")
        elif serial == SHOWCASE_ENDORSEMENTS:
            self.at(max(1, n // 5), self.endorse, policy_id, 0, "add")
            self.at(max(1, n * 2 // 5), self.endorse, policy_id, 0, "remove")
            self.at(max(1, n * 7 // 10), self.cancel, policy_id, 0)
        else:
            gap = max(1, n // 25)
            script = [("reserve", gap), ("payment", gap), ("error", 0), ("correction", gap), ("payment", gap),
                      ("recovery", gap), ("close", gap), ("reopen", gap), ("payment", gap), ("close", gap)]
            loss_day = n // 20
            self.at(loss_day + 1, self.open_claim, policy_id, next(iter(policy.locations)),
                    self.date_of(loss_day), None, script)

    def live(self, policy_id: str, term: int) -> _Policy | None:
        """The policy if it is still in the term the event was planned for and not cancelled."""
        policy = self.policies[policy_id]
        if policy.term != term or policy.row["Status"] == "CANCELLED":
            return None
        return policy

    def endorse(self, day: int, policy_id: str, term: int, kind: str | None) -> LedgerTransaction | None:
        """A mid-term change of sums insured, an added site or a removed one, rated pro rata."""
        policy = self.live(policy_id, term)
        if policy is None:
            return None
        rng, booked = self.rng, self.date_of(day)
        inception, expiry = policy.row["InceptionDate"], policy.row["ExpiryDate"]
        effective = max(inception, booked - timedelta(days=rng.int(0, 10)))
        if effective >= expiry:
            return None
        removable = [lid for lid in policy.locations if lid not in policy.claimed]
        if kind is None:
            kind = rng.weighted(_ENDORSEMENTS)
        if kind == "remove" and (len(policy.locations) < 2 or not removable):
            kind = "tiv"
        before = self.total_tiv(policy)
        if kind == "add":
            site = self.new_location(policy, self.country(policy), self.occupancies(policy))
            muts = [Mutation("Locations", "insert", site)]
        elif kind == "remove":
            gone = policy.locations.pop(rng.pick(removable))
            muts = [Mutation("Locations", "delete", _key("Locations", gone))]
        else:
            factor = rng.pct(101, 130) if rng.random() < 0.7 else rng.pct(80, 99)
            muts = [Mutation("Locations", "update", self.revalue(policy, lid, factor))
                    for lid in rng.sample(policy.locations, min(2, len(policy.locations)))]
        remaining = Decimal((expiry - effective).days) / 365
        gross = (self.total_tiv(policy) - before) * policy.rate * remaining
        premium = self.premium_row(policy, "ENDORSEMENT", effective, booked, gross)
        return LedgerTransaction("seed:policy-endorse", (*muts, Mutation("PremiumTransactions", "insert", premium)))

    def revalue(self, policy: _Policy, location_id: str, factor: Decimal) -> dict:
        """A site's new sums insured, as a new full row (rows already booked stay untouched)."""
        old, currency = policy.locations[location_id], policy.row["Currency"]
        new = dict(old)
        for column in ("BuildingTiv", "ContentsTiv", "BiTiv"):
            if old[column] is not None:
                new[column] = money(old[column] * factor, currency)
        policy.locations[location_id] = new
        return new

    def country(self, policy: _Policy) -> _Country:
        return next(c for c in COUNTRIES if c.code == policy.row["CountryCode"])

    @staticmethod
    def occupancies(policy: _Policy) -> tuple[int, ...]:
        return tuple(s["OccupancyCode"] for s in policy.locations.values()) or (1100,)

    def cancel(self, day: int, policy_id: str, term: int) -> LedgerTransaction | None:
        """Cancellation returns the unexpired premium; the term now ends on the cancellation date."""
        policy = self.live(policy_id, term)
        if policy is None:
            return None
        booked = self.date_of(day)
        inception, expiry = policy.row["InceptionDate"], policy.row["ExpiryDate"]
        effective = max(inception, booked)
        if effective >= expiry:
            return None
        unexpired = Decimal((expiry - effective).days) / Decimal((expiry - inception).days)
        currency = policy.row["Currency"]
        gross, commission, tax = (money(-a * unexpired, currency) for a in policy.term_premium)
        policy.term_premium = [a + b for a, b in zip(policy.term_premium, (gross, commission, tax))]
        policy.row = {**policy.row, "ExpiryDate": effective, "Status": "CANCELLED"}
        premium = _row("PremiumTransactions", PolicyId=policy_id, TransactionId=self.next_id("PT", 8),
                       TransactionType="CANCELLATION", EffectiveDate=effective, BookedDate=booked,
                       GrossPremium=gross, CommissionAmount=commission, TaxAmount=tax, Currency=currency)
        return LedgerTransaction("seed:policy-cancel", (
            Mutation("Policies", "update", policy.row), Mutation("PremiumTransactions", "insert", premium)))

    def renew(self, day: int, policy_id: str, term: int, forced: bool) -> LedgerTransaction | None:
        """At expiry most policies renew for a like term, re-rated and often with indexed values."""
        policy = self.live(policy_id, term)
        if policy is None or not (forced or self.rng.random() < RENEW_ODDS):
            return None
        rng = self.rng
        inception = policy.row["ExpiryDate"]
        policy.term += 1
        policy.rate = policy.rate * rng.pct(95, 110)
        row = policy.row
        policy.row = {**row, "InceptionDate": inception, "ExpiryDate": policy.term_end(inception),
                      "TreatyId": self.treaty_for(row["LineOfBusiness"], row["Currency"], inception),
                      "Status": "RENEWED"}
        muts = [Mutation("Policies", "update", policy.row)]
        if rng.random() < 0.5:
            index = rng.pct(102, 105)  # sums insured indexed for inflation
            muts += [Mutation("Locations", "update", self.revalue(policy, lid, index))
                     for lid in list(policy.locations)]
        premium = self.term_premium(policy, inception, "RENEWAL", self.date_of(day))
        self.plan_term(policy, day, 0)
        return LedgerTransaction("seed:policy-renew", (*muts, Mutation("PremiumTransactions", "insert", premium)))

    # -- catastrophes -------------------------------------------------------------------------
    def plan_cat_events(self) -> None:
        """About five catastrophes a year, evenly spaced through the book."""
        count = max(1, self.days // 73)
        for k in range(count):
            day = (k + 1) * self.days * 2 // (2 * count + 1)
            self.at(day, self.cat_event, k + 1)

    def in_force(self, policy_id: str, location_id: str, on: date) -> dict | None:
        policy = self.policies[policy_id]
        site = policy.locations.get(location_id)
        if site is None or not (policy.row["InceptionDate"] <= on < policy.row["ExpiryDate"]):
            return None
        return site

    def cat_event(self, day: int, ordinal: int) -> None:
        """A catastrophe strikes a zone where the book has sites in force (so even a small book
        gets cat claims): a quarter of the sites covered for its peril claim, reported within
        days, all with the event's code.

        Zone and peril come from draws every desk shares (the event's own seed), so desks
        agree on where an event struck: each desk takes the first drawn zone and peril it has
        covered sites in force for, which for desks of any size is the first draw."""
        on = self.date_of(day)
        draws = _Dice(_derived_seed("cat", self.desk.seed, ordinal))
        for _attempt in range(_CAT_ATTEMPTS):
            zone = draws.weighted(_ZONE_WEIGHTS)
            peril = draws.pick(zone.perils)
            hit = [(pid, lid) for pid, lid in self.zone_sites.get(zone.code, ())
                   if (site := self.in_force(pid, lid, on)) is not None
                   and peril in site["PerilsCovered"].split(";")]
            if hit:
                break
        else:
            return None
        rng = self.rng
        first = rng.pick(hit)  # at least one claim per event and desk
        code = f"CAT-{on.year}-{peril}-{ordinal:02d}"
        for pid, lid in hit:
            if (pid, lid) == first:
                self.at(day + 1, self.open_claim, pid, lid, on, (peril, code), None)
            elif rng.random() < 0.25:
                self.at(day + rng.int(1, 20), self.open_claim, pid, lid, on, (peril, code), None)
        return None

    # -- claims -------------------------------------------------------------------------------
    def open_claim(self, day: int, policy_id: str, location_id: str, loss_date: date,
                   cat: tuple[str, str] | None, script: list | None) -> LedgerTransaction | None:
        """First notice of loss: the claim and its OPEN transaction with the initial reserve."""
        policy = self.policies[policy_id]
        site = policy.locations.get(location_id)
        if site is None or (policy.row["Status"] == "CANCELLED" and loss_date >= policy.row["ExpiryDate"]):
            return None
        rng, currency = self.rng, policy.row["Currency"]
        peril, event = cat if cat else (rng.pick(site["PerilsCovered"].split(";")), None)
        lo, hi = rng.weighted(_LOSS_BANDS[cat is not None])
        reserve = money(self.site_tiv(site) * Decimal(rng.int(lo, hi)) / 1000, currency)
        claim_id = self.next_id("C", 7)
        row = _row("Claims", ClaimId=claim_id, PolicyId=policy_id, LocationId=location_id, LossDate=loss_date,
                   ReportedDate=self.date_of(day), Peril=peril, CatEventCode=event, Status="OPEN",
                   Description=f"{PERIL_NAMES[peril]} damage to {rng.pick(DAMAGE)}")
        claim = _Claim(row, currency, script if script is not None else self.claim_script(), reserve, Decimal(0))
        self.claims[claim_id] = claim
        policy.claimed.add(location_id)
        opened = self.claim_txn(claim, "OPEN", day, self.zero[currency])
        self.next_step(day, claim_id)
        return LedgerTransaction("seed:claim-open", (Mutation("Claims", "insert", row),
                                                     Mutation("ClaimTransactions", "insert", opened)))

    def claim_script(self) -> list[tuple[str, int]]:
        """A claim's lifecycle: reserve review, payments, maybe a recovery, close, maybe reopen."""
        rng = self.rng
        steps = [("reserve", rng.int(5, 30))] if rng.random() < 0.6 else []
        for _ in range(rng.weighted(_PAYMENT_COUNTS)):
            steps.append(("payment", rng.int(10, 45)))
            if rng.random() < 0.03:
                steps += [("error", 0), ("correction", rng.int(1, 5))]
        if rng.random() < 0.15:
            steps.append(("recovery", rng.int(10, 40)))
        steps.append(("close", rng.int(3, 20)))
        if rng.random() < 0.08:
            steps += [("reopen", rng.int(20, 90)), ("payment", rng.int(10, 40)), ("close", rng.int(3, 20))]
        return steps

    def next_step(self, day: int, claim_id: str) -> None:
        claim = self.claims[claim_id]
        if claim.steps:
            self.at(day + claim.steps[0][1], self.claim_step, claim_id)

    def claim_txn(self, claim: _Claim, kind: str, day: int, paid: Decimal) -> dict:
        """A claim transaction: PaidAmount paid in it, ReserveAmount outstanding after it."""
        return _row("ClaimTransactions", ClaimId=claim.row["ClaimId"], TransactionId=self.next_id("CT", 8),
                    TransactionType=kind, BookedDate=self.date_of(day), PaidAmount=paid,
                    ReserveAmount=claim.reserve, Currency=claim.currency)

    def claim_step(self, day: int, claim_id: str) -> LedgerTransaction:
        claim = self.claims[claim_id]
        step, _delay = claim.steps.pop(0)
        tag, muts = getattr(self, f"claim_{step}")(claim, day)
        self.next_step(day, claim_id)
        return LedgerTransaction(tag, tuple(muts))

    def claim_reserve(self, claim: _Claim, day: int):
        claim.reserve = money(claim.reserve * self.rng.pct(70, 150), claim.currency)
        txn = self.claim_txn(claim, "RESERVE_CHANGE", day, self.zero[claim.currency])
        return "seed:claim-reserve", [Mutation("ClaimTransactions", "insert", txn)]

    def claim_payment(self, claim: _Claim, day: int):
        """Part payments draw the reserve down; the last payment before closing settles it."""
        final = next(s for s, _ in claim.steps if s in ("payment", "close")) == "close"
        amount = claim.reserve if final else money(claim.reserve * self.rng.pct(25, 60), claim.currency)
        claim.reserve -= amount
        claim.paid += amount
        claim.last_payment = self.claim_txn(claim, "PAYMENT", day, amount)
        return "seed:claim-payment", [Mutation("ClaimTransactions", "insert", claim.last_payment)]

    def claim_error(self, claim: _Claim, day: int):
        """The last payment keyed in twice by mistake; a later correction deletes it."""
        claim.in_error = {**claim.last_payment, "TransactionId": self.next_id("CT", 8)}
        return "seed:claim-payment", [Mutation("ClaimTransactions", "insert", claim.in_error)]

    def claim_correction(self, claim: _Claim, day: int):
        error, claim.in_error = claim.in_error, None
        return "seed:claim-correction", [Mutation("ClaimTransactions", "delete", _key("ClaimTransactions", error))]

    def claim_recovery(self, claim: _Claim, day: int):
        """Salvage or subrogation: money back, booked as a negative payment."""
        amount = money(claim.paid * self.rng.pct(5, 25), claim.currency)
        claim.paid -= amount
        txn = self.claim_txn(claim, "RECOVERY", day, -amount)
        return "seed:claim-recovery", [Mutation("ClaimTransactions", "insert", txn)]

    def claim_close(self, claim: _Claim, day: int):
        claim.reserve = self.zero[claim.currency]
        claim.row = {**claim.row, "Status": "CLOSED"}
        txn = self.claim_txn(claim, "CLOSE", day, self.zero[claim.currency])
        return "seed:claim-close", [Mutation("ClaimTransactions", "insert", txn),
                                    Mutation("Claims", "update", claim.row)]

    def claim_reopen(self, claim: _Claim, day: int):
        claim.reserve = money(max(claim.paid, Decimal(1000)) * self.rng.pct(10, 40), claim.currency)
        claim.row = {**claim.row, "Status": "REOPENED"}
        txn = self.claim_txn(claim, "REOPEN", day, self.zero[claim.currency])
        return "seed:claim-reopen", [Mutation("ClaimTransactions", "insert", txn),
                                     Mutation("Claims", "update", claim.row)]


def desk_book(desk: BookDesk) -> Iterator[LedgerTransaction]:
    """One desk's transactions in commit order."""
    return _BookSimulator(desk).run()


def generate_book(seed: int, policies: int, days: int, start_date: date = date(2026, 1, 1),
                  desk_policies: int = DESK_POLICIES, defects: float = 0.0) -> Iterator[LedgerTransaction]:
    """The book's transactions in commit order, fully determined by the arguments: its desks'
    transactions merged by (day, desk), each desk's in its own order. With `defects` > 0 it
    carries planted defects (transforms.seed_defects, which also lists them)."""
    if defects:
        from transforms.seed_defects import defective_book  # it builds on this module

        return defective_book(seed, policies, days, defects, start_date, desk_policies)[0]
    desks = book_desks(seed, policies, days, start_date, desk_policies)
    if len(desks) == 1:
        return desk_book(desks[0])
    return heapq.merge(*(desk_book(d) for d in desks), key=lambda t: (t.day, t.desk))


# ---------------------------------------------------------------------------------------------
# Reading a book back
# ---------------------------------------------------------------------------------------------

class BookTally:
    """Running counts both writers report: transactions, change records, mods per table."""

    MOD_TYPES = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}

    def __init__(self) -> None:
        self.transactions = self.records = self.mods = 0
        self.per_table: Counter = Counter()
        self.mod_types: Counter = Counter()

    def add(self, txn: LedgerTransaction) -> list[tuple[str, str, list[Mutation]]]:
        groups = txn.record_groups()
        self.transactions += 1
        self.records += len(groups)
        for table, op, muts in groups:
            self.mods += len(muts)
            self.per_table[table] += len(muts)
            self.mod_types[self.MOD_TYPES[op]] += len(muts)
        return groups

    def as_dict(self) -> dict:
        return {
            "transactions": self.transactions, "records": self.records, "mods": self.mods,
            "per_table": dict(sorted(self.per_table.items())), "mod_types": dict(sorted(self.mod_types.items())),
        }


def book_summary(book: Iterable[LedgerTransaction]) -> dict:
    """Counts of a book: as BookTally, plus transaction tags and business transaction types."""
    tally, tags, premium, claim = BookTally(), Counter(), Counter(), Counter()
    for txn in book:
        tally.add(txn)
        tags[txn.tag] += 1
        for m in txn.mutations:
            if m.op == "insert" and m.table == "PremiumTransactions":
                premium[m.row["TransactionType"]] += 1
            elif m.op == "insert" and m.table == "ClaimTransactions":
                claim[m.row["TransactionType"]] += 1
    return {**tally.as_dict(), "tags": dict(sorted(tags.items())),
            "premium_types": dict(sorted(premium.items())), "claim_types": dict(sorted(claim.items()))}


def replay_book(book: Iterable[LedgerTransaction]) -> dict[str, dict[tuple, dict]]:
    """The ledger's final rows (table -> primary key -> row) after applying the book in order.

    Strict like Spanner: inserting an existing key, or updating or deleting a missing one,
    raises ValueError, so a replay also proves the book is a valid sequence of mutations."""
    state: dict[str, dict[tuple, dict]] = {name: {} for name in ledger_tables()}
    for n, txn in enumerate(book):
        for m in txn.mutations:
            rows, key = state[m.table], tuple(m.row[k] for k in _KEYS[m.table])
            exists = key in rows
            if (m.op == "insert") == exists:
                raise ValueError(f"transaction {n} ({txn.tag}): {m.op} of {'existing' if exists else 'missing'} "
                                 f"{m.table} row {key}")
            if m.op == "delete":
                del rows[key]
            else:
                rows[key] = m.row
    return state
