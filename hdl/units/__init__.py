"""Datapath units, each synthesised and tested alone: the MAC array and its DSP pairs, the requantiser, the activation table, the pooling unit."""
