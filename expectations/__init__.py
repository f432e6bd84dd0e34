"""Great Expectations suites built from partner contracts, and the gate that runs them."""
