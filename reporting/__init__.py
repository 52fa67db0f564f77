"""The reporting API: identity, rate limits and reports over any range."""
