"""Host side of the board: the UART protocol (``host.protocol``) and input images (``host.inputs``).

``python -m hdl.run`` is the command line that uses both.
"""
