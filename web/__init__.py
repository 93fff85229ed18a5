"""HTTP: translates requests into domain calls and domain errors into HTTP answers."""
