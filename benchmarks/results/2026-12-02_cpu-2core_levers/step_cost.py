import sys, time, torch, torch.nn.functional as F
from syncssl.models.pairnet import PairNet, PairNetConfig
torch.manual_seed(0)
def bench(crop, width, cl=True, compile=False, n=20, batch=32):
    m = PairNet(PairNetConfig(depth=18, width=width, center=True))
    fmt = torch.channels_last if cl else torch.contiguous_format
    m = m.to(memory_format=fmt); m.train()
    f = torch.compile(m) if compile else m
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x = torch.randn(2*batch, 3, crop, crop).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))
    def step():
        o = f(x); loss = F.cross_entropy(o["sync"], y) + F.cross_entropy(o["flip"], y)
        opt.zero_grad(); loss.backward(); opt.step()
    for _ in range(5): step()
    t = time.perf_counter()
    for _ in range(n): step()
    dt = (time.perf_counter() - t) / n
    print(f"crop {crop} width {width} cl {cl} compile {compile}: {batch/dt:.0f} pairs/s", flush=True)
for args in [(64, .25, True), (64, .25, False), (96, .25, True), (128, .25, True), (64, .5, True), (64, .375, True)]:
    bench(*args)
if len(sys.argv) > 1: bench(64, .25, True, True)
