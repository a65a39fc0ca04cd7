"""opensearch-mm core."""
