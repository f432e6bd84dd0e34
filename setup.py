"""proveniq-rex: reinsurance data exchange on Apache Beam (one distribution, console script `rex`).

The top-level packages follow the product's fixed layout (DESIGN.md §3). Dependencies are pinned
to a set that resolves together with Apache Beam 2.77 (Beam caps pyarrow below 26).
"""
from setuptools import setup

INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "google-cloud-spanner==3.71.0",
    "google-cloud-bigquery==3.47.0",
    "google-cloud-storage==3.17.1",
    "great-expectations==1.24.1",
    "pandas==3.1.1",
    "pyarrow==25.0.1",
    "numpy==2.4.6",
    "duckdb==2.0.1",
    "fastavro==1.13.1",
    "open-data-contract-standard==3.2.0",  # ships the ODCS v3 JSON schema rex lints contracts with
    "jsonschema==4.26.0",
    "openpyxl==3.1.5",
    "PyYAML==6.0.4",
    "click==8.5.1",
    "rich==15.0.0",
]

TEST_REQUIRES = [
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",
    "hypothesis==6.170.17",
    "ods-tools==5.0.9",  # OED's own validator: the tests check rex's OED files with it
]

setup(
    name="proveniq-rex",
    version="0.1.0",
    description="Proveniq Reinsurance Exchange: Spanner change streams to partner bordereaux",
    python_requires=">=3.11",
    packages=["pipelines", "transforms", "contracts", "expectations"],
    package_data={
        "transforms": ["*.sql"],
        "contracts": ["partners/*.yaml"],
        "expectations": ["suites/*.json"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    entry_points={"console_scripts": ["rex=pipelines.cli:main"]},
)
