-- The insurer's ledger in Cloud Spanner (GoogleSQL dialect): the source of truth rex reads.
--
-- Refinements of the reference schema in DESIGN.md §4, each for a reason:
--  * Money columns are NUMERIC (exact, 38 digits, 9 decimal places); never FLOAT64.
--  * Latitude/Longitude are FLOAT64: coordinates, not money, and OED carries them as floats.
--  * PerilsCovered is a STRING of OED peril codes separated by ';' (the OED file convention),
--    so it round-trips into OED location files unchanged.
--  * Treaties.Territories (added): the treaty's territorial scope, ISO 3166 alpha-2 country codes
--    separated by ';' (the same list style); NULL means worldwide. The reference schema has no
--    territory, yet a risk attaches to a treaty by line of business, country and inception.
--  * Claims are keyed by ClaimId alone (a top-level table): claims are looked up on their own
--    and a claim may be re-attached to another location; ClaimTransactions interleave in Claims.
--  * FxRates is keyed (Currency, RateDate); UsdPerUnit is NUMERIC so conversions stay exact.
--  * Interleaved children use ON DELETE NO ACTION: deleting a parent with live children is a
--    ledger error, not a silent cascade that the change stream would have to reconstruct.
-- Statements are separated by ';' at end of line (rex applies them one by one).

CREATE TABLE Reinsurers (
  ReinsurerId STRING(64) NOT NULL,
  Name STRING(MAX) NOT NULL,
  CountryCode STRING(2) NOT NULL,
) PRIMARY KEY (ReinsurerId);

CREATE TABLE Treaties (
  TreatyId STRING(64) NOT NULL,
  Umr STRING(32) NOT NULL,
  Name STRING(MAX) NOT NULL,
  TreatyType STRING(16) NOT NULL,
  LineOfBusiness STRING(32) NOT NULL,
  Currency STRING(3) NOT NULL,
  InceptionDate DATE NOT NULL,
  ExpiryDate DATE NOT NULL,
  CessionRate NUMERIC,
  Retention NUMERIC,
  Lines INT64,
  Attachment NUMERIC,
  `Limit` NUMERIC,
  CommissionRate NUMERIC,
  Territories STRING(MAX),
) PRIMARY KEY (TreatyId);

CREATE TABLE Participations (
  TreatyId STRING(64) NOT NULL,
  ReinsurerId STRING(64) NOT NULL,
  SharePct NUMERIC NOT NULL,
) PRIMARY KEY (TreatyId, ReinsurerId),
  INTERLEAVE IN PARENT Treaties ON DELETE NO ACTION;

CREATE TABLE Policies (
  PolicyId STRING(64) NOT NULL,
  PolicyNumber STRING(32) NOT NULL,
  InsuredName STRING(MAX) NOT NULL,
  CountryCode STRING(2) NOT NULL,
  LineOfBusiness STRING(32) NOT NULL,
  Currency STRING(3) NOT NULL,
  InceptionDate DATE NOT NULL,
  ExpiryDate DATE NOT NULL,
  TreatyId STRING(64),
  Status STRING(16) NOT NULL,
) PRIMARY KEY (PolicyId);

CREATE TABLE Locations (
  PolicyId STRING(64) NOT NULL,
  LocationId STRING(64) NOT NULL,
  CountryCode STRING(2) NOT NULL,
  Zone STRING(32),
  Latitude FLOAT64,
  Longitude FLOAT64,
  PerilsCovered STRING(MAX),
  OccupancyCode INT64,
  ConstructionCode INT64,
  BuildingTiv NUMERIC,
  ContentsTiv NUMERIC,
  BiTiv NUMERIC,
) PRIMARY KEY (PolicyId, LocationId),
  INTERLEAVE IN PARENT Policies ON DELETE NO ACTION;

CREATE TABLE PremiumTransactions (
  PolicyId STRING(64) NOT NULL,
  TransactionId STRING(64) NOT NULL,
  TransactionType STRING(16) NOT NULL,
  EffectiveDate DATE NOT NULL,
  BookedDate DATE NOT NULL,
  GrossPremium NUMERIC NOT NULL,
  CommissionAmount NUMERIC,
  TaxAmount NUMERIC,
  Currency STRING(3) NOT NULL,
) PRIMARY KEY (PolicyId, TransactionId),
  INTERLEAVE IN PARENT Policies ON DELETE NO ACTION;

CREATE TABLE Claims (
  ClaimId STRING(64) NOT NULL,
  PolicyId STRING(64) NOT NULL,
  LocationId STRING(64),
  LossDate DATE NOT NULL,
  ReportedDate DATE NOT NULL,
  Peril STRING(8) NOT NULL,
  CatEventCode STRING(32),
  Status STRING(16) NOT NULL,
  Description STRING(MAX),
) PRIMARY KEY (ClaimId);

CREATE TABLE ClaimTransactions (
  ClaimId STRING(64) NOT NULL,
  TransactionId STRING(64) NOT NULL,
  TransactionType STRING(16) NOT NULL,
  BookedDate DATE NOT NULL,
  PaidAmount NUMERIC,
  ReserveAmount NUMERIC,
  Currency STRING(3) NOT NULL,
) PRIMARY KEY (ClaimId, TransactionId),
  INTERLEAVE IN PARENT Claims ON DELETE NO ACTION;

CREATE TABLE FxRates (
  Currency STRING(3) NOT NULL,
  RateDate DATE NOT NULL,
  UsdPerUnit NUMERIC NOT NULL,
) PRIMARY KEY (Currency, RateDate);

CREATE CHANGE STREAM LedgerChanges FOR ALL OPTIONS (value_capture_type = 'NEW_ROW');
