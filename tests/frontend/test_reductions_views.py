"""Reductions, views and indexing against eager."""
import torch


def r(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def test_reductions(check):
    def f(x):
        return (x.sum(), x.sum(1), x.sum((0, 2), keepdim=True), x.mean(-1), x.amax(1), x.amin((0, 1)),
                x.prod(2), x.argmax(1), x.argmin(-1, keepdim=True), x.argmax(), x.max(1).values,
                x.min(0)[1], x.var(1), x.std(0, correction=0), (x > 0).any(1), (x > -3).all(),
                x.logsumexp(-1), x.norm(dim=-1))
    check(f, r(3, 4, 5))


def test_integer_and_bool_sums(check):
    def f(i, b):
        return i.sum(0), b.sum(-1), i.prod(1), i.amax(0), b.any(), i.float().mean()
    check(f, torch.randint(-3, 4, (4, 5)), torch.rand(4, 5) > 0.5)


def test_var_mean_low_precision(check):
    def f(x):
        v, m = torch.var_mean(x, dim=-1, keepdim=True)
        return v, m, x.mean((0, 1)), x.sum(0)
    check(f, r(5, 16, dtype=torch.bfloat16))


def test_views(check):
    def f(x):
        return (x.view(6, 4).t() + 1, x.permute(2, 0, 1) * 2, x.transpose(0, 2).reshape(-1), x.unsqueeze(1).expand(2, 5, 3, 4),
                x[:, 1:, ::2], x[1], x[..., -1], x.flatten(1).squeeze(), x.split(2, -1)[1], x.chunk(3, 1)[2],
                x.unbind(0)[1], torch.stack([x, x * 2], 1), x.repeat(1, 2, 1), x.narrow(2, 1, 2), x.movedim(0, -1) - 1)
    check(f, r(2, 3, 4))


def test_cat_pad(check):
    def f(x, y, i):
        return (torch.cat([x, y], 0), torch.cat([x, i], 1), torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5),
                torch.nn.functional.pad(x, (-1, 1)), torch.cat([x, torch.empty(0)], 0))
    check(f, r(2, 3), r(4, 3), torch.randint(0, 5, (2, 2)))


def test_indexing(check):
    def f(x, idx, idx2, emb):
        return (x[idx], x[:, idx2], x.index_select(1, idx2), torch.gather(x, 1, idx2.expand(4, -1)),
                x[idx, idx2], torch.nn.functional.embedding(idx, emb), x[idx2 - 3], torch.take_along_dim(x, idx2.expand(4, -1), 1))
    check(f, r(4, 5), torch.tensor([3, 0, 1]), torch.tensor([[4, 0, 2]]).view(3), r(6, 3))


def test_matmul_family(check):
    def f(a, b, c, bias, v):
        return (a @ b, torch.bmm(c, c.transpose(1, 2)), torch.addmm(bias, a, b), torch.nn.functional.linear(a, b.t(), bias),
                torch.einsum("bij,bjk->bik", c, c.transpose(1, 2)), c @ b, a @ v, torch.baddbmm(c, c, c.transpose(1, 2)[:, :, :4], alpha=0.5))
    check(f, r(3, 4), r(4, 5), r(2, 4, 4), r(5), r(4))


def test_half_matmul(check):
    check(lambda a, b: (a @ b).relu(), r(8, 16, dtype=torch.float16), r(16, 8, dtype=torch.float16))


def test_cumsum_and_one_hot_scatter(check):
    def f(x, m, idx):
        return (x.cumsum(1), m.long().cumsum(-1) - 1, x.to(torch.float16).cumsum(0),
                torch.zeros(3, 5).scatter(1, idx, 1.0), x[:, :4].scatter(1, idx.clamp(max=3), x[:, 4:] * 2))
    check(f, r(3, 5), torch.rand(3, 6) > 0.3, torch.tensor([[4], [0], [2]]))


def test_flip_diagonal_round_fmax(check):
    def f(x, y):
        return (x.flip(0, 2), torch.diagonal(x, 1, 1, 2), x[0].diagonal(-1), torch.round(x * 10, decimals=1),
                torch.round(x * 100, decimals=-1), torch.fmax(x, y), torch.fmin(x, y), x.cumprod(-1),
                x.index_select(1, torch.tensor(2)))
    y = r(2, 3, 4)
    y[0, 0, 0] = float("nan")
    check(f, r(2, 3, 4), y)


def test_unfold(check):
    check(lambda x: (x.unfold(1, 3, 2) * 2, x.unfold(0, 2, 1).sum(-1)), r(4, 7))


def test_as_strided_restriding_size_one_dims_is_no_gather(check, tmp_path):
    # ConvNeXt's pooled [N,C,1,1] reaches ember as as_strided(sizes, eager's channels-last
    # strides (C, 1, C, C)): the same elements in the same order as the contiguous value, since a
    # size-1 dim's stride addresses nothing. It lowers to the value itself, not iota + a gather.
    def f(x):
        pooled = (x * 2).mean((2, 3), keepdim=True)
        y = pooled.as_strided((4, 8, 1, 1), (8, 1, 8, 8))
        return torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), (8,)) + 1
    check(f, r(4, 8, 3, 3))
    (ir,) = tmp_path.rglob("00.input.ir")
    assert "as_strided" not in ir.read_text() and "index[" not in ir.read_text() and "iota" not in ir.read_text()
