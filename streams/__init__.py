"""Wire schema, decoding, the join, and the Kafka and file edges."""
