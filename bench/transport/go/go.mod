module moirai.bench/transport/peer

go 1.19
