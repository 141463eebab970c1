"""The worker process: runs every workflow and activity of the control plane."""
