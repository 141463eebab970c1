"""The JSON API and portal (``tcloud-api``): starts and queries workflows, never blocks on one."""
