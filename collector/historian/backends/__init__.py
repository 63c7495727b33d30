"""History stores: InfluxDB and the embedded SQLite default."""
