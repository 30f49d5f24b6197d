"""Where a meter's bytes come from: serial ports, network bridges, capture files."""
