"""The petition hotline on Asterisk: the AMI link, FastAGI and the IVR, call intake, prompts, paging, the dial test."""
