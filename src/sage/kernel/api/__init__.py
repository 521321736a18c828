"""What users write: environments, DataStream, function classes and services."""
