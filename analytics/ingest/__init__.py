"""Reading an export: the schema and its aliases, file formats, drug names, the de-identification guard and validation."""
