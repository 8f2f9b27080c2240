"""training.churn."""
