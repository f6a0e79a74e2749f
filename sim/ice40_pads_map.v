// techmap for the gate-level check (sim/netlist.py): the pads and the PLL of a synthesised
// iCE40 design become wires, so that yosys' cell models can simulate the rest as it was
// synthesised.  The design's pads are unregistered inputs (PIN_TYPE 000001) and unregistered
// outputs (101001, output enable tied high); anything else stops the map.  The PLL passes
// its reference through and reports lock at once: the design's own power-on reset counter
// (hdl/board/pll.py) still runs.
module SB_IO (inout PACKAGE_PIN, input CLOCK_ENABLE, input D_OUT_0, input OUTPUT_ENABLE, output D_IN_0);
	parameter PIN_TYPE = 6'b000000;
	parameter PULLUP = 1'b0;
	parameter NEG_TRIGGER = 1'b0;
	parameter IO_STANDARD = "SB_LVCMOS";
	generate
		if (PIN_TYPE == 6'b000001)
			assign D_IN_0 = PACKAGE_PIN;
		else if (PIN_TYPE == 6'b101001)
			assign PACKAGE_PIN = D_OUT_0;
		else
			_TECHMAP_FAIL_ unsupported_pin_type ();
	endgenerate
endmodule

module SB_PLL40_PAD (input PACKAGEPIN, output PLLOUTCORE, output PLLOUTGLOBAL, input EXTFEEDBACK,
                     input [7:0] DYNAMICDELAY, output LOCK, input BYPASS, input RESETB,
                     input LATCHINPUTVALUE, output SDO, input SDI, input SCLK);
	parameter FEEDBACK_PATH = "SIMPLE";
	parameter DIVR = 4'b0000;
	parameter DIVF = 7'b0000000;
	parameter DIVQ = 3'b000;
	parameter FILTER_RANGE = 3'b000;
	assign PLLOUTGLOBAL = PACKAGEPIN;
	assign PLLOUTCORE = PACKAGEPIN;
	assign LOCK = 1'b1;
endmodule
