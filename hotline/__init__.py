"""The petition hotline: Asterisk link (AMI, FastAGI), call intake, cases and their workflow."""
