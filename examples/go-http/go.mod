module trackq-http-example

go 1.19
