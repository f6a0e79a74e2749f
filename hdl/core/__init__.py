"""The accelerator core: sequencer, feeder, drain, pool and add engines, descriptors, ports and the weight memory."""
