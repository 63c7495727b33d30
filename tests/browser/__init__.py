"""Browser tests: the dashboards in real headless Chromium, against a real linemon."""
