module trackq-example

go 1.19
