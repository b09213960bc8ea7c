"""The data contracts: Great Expectations suites as JSON, one per boundary, and the module that runs them."""
