// A registered 8 x 8 multiply, a 16-bit accumulate and a compare: the smallest design with a
// multiplier, a carry chain, LUTs and flip-flops, to capture tool reports for hw.synth's tests.
module mac (input clk, input [7:0] a, input [7:0] b, input clear, output reg [15:0] acc,
            output reg full);
  reg [7:0] a_q, b_q;
  always @(posedge clk) begin
    a_q <= a;
    b_q <= b;
    acc <= clear ? 16'd0 : acc + a_q * b_q;
    full <= acc[15:8] == 8'hff;
  end
endmodule
