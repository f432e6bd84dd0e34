"""Partner data contracts (ODCS v3 YAML) and the code that loads and compiles them."""
