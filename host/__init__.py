"""Host side of the board: the wire format (``host.wire``, shared with the device
generator), the client that speaks it (``host.client``) and input images (``host.inputs``).

``python -m hdl.run`` is the command line that uses them.
"""
