"""W2 as a plain script: import torch, make the data, 1000 full-batch SGD steps on one linear layer.

The whole-process baseline for `python -m dlbasics.train` of the same work (see bench.py).
"""

import torch

torch.manual_seed(0)
x = torch.randn(100, 2)
y = x @ torch.tensor([[2.0], [-3.5]]) + 5 + torch.randn(100, 1)
x_train, y_train, x_val, y_val = x[:80], y[:80], x[80:90], y[80:90]
net = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
for _ in range(1000):
    loss = torch.nn.functional.mse_loss(net(x_train), y_train)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        val_loss = torch.nn.functional.mse_loss(net(x_val), y_val).item()
print(f"weights {net.weight.data.tolist()}, bias {net.bias.item():.3f}, val loss {val_loss:.3f}")
