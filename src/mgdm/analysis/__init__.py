"""Distribution analysis of the synthetic sets, and the paper's tables and figures."""
