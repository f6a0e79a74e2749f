"""Around the core on a board: the SoC (UART protocol, flash boot), PLL, pins."""
