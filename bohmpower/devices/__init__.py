"""Open devices: electrons injected from Fermi reservoirs, their steady-state current, and its Landauer
reference (docs/devices.md)."""
