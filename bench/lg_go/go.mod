module ssebench/lg

go 1.22
