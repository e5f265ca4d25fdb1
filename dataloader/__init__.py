"""Reading, validating and splitting datasets in the scene layout (dataset.csv + images/)."""
