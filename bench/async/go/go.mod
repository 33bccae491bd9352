module moirai.bench/async/peer

go 1.19
