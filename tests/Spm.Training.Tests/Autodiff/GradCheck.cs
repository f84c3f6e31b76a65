using Microsoft.ML.OnnxRuntime;
using Spm.Core.Randomness;
using Spm.Diffusion.Onnx.Proto;
using Spm.Training.Autodiff;

namespace Spm.Training.Tests.Autodiff;

/// <summary>
/// Central finite-difference check of the gradient builder: the analytic gradient of L = sum(out * R) from the
/// built graph (run in ORT) against (L(x + h e_i) - L(x - h e_i)) / 2h from the forward model (run in ORT).
/// </summary>
internal static class GradCheck
{
    public sealed record Tensor(long[] Shape, double[] Data, int ElemType);

    public static Tensor Random(SeededRandom rng, int elemType, params long[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var data = new double[n];
        for (int i = 0; i < n; i++) data[i] = rng.NextGaussian();
        return new Tensor(shape, data, elemType);
    }

    public static Tensor Indices(long[] values, params long[] shape) => new(shape, values.Select(v => (double)v).ToArray(), TinyModel.I64);

    /// <summary>Checks every wrt input; returns the analytic gradients.</summary>
    public static Dictionary<string, double[]> Run(ModelProto model, Dictionary<string, Tensor> feeds, string output, string[] wrt,
        double h = 1e-6, double rtol = 1e-6, int maxCoordinates = 48, ulong seed = 1, string? externalFolder = null)
    {
        var settings = new GradientSessionSettings(externalFolder, IntraOpThreads: 1);
        var shapes = TensorShapes.Probe(model, ToOrt(feeds), settings);
        var built = GradientGraphBuilder.Build(model, new GradientRequest([LossTerm.WeightedSum(output, "R")], wrt), shapes);
        shapes.TryGet(output, out int outType, out var outDims);
        var rng = new SeededRandom(seed);
        var r = Random(rng, outType, outDims);
        var all = new Dictionary<string, Tensor>(feeds) { ["R"] = r };

        var analytic = new Dictionary<string, double[]>();
        double loss;
        using (var session = GradientSessionFactory.Create(built.Model, settings))
        {
            var names = new List<string> { built.LossOutput };
            names.AddRange(wrt.Select(w => built.GradientOutputs[w]));
            var results = RunSession(session, all, names);
            loss = results[0][0];
            for (int i = 0; i < wrt.Length; i++) analytic[wrt[i]] = results[i + 1];
        }

        using var fwd = GradientSessionFactory.Create(model, settings);
        double Loss(Dictionary<string, Tensor> f)
        {
            var o = RunSession(fwd, f, [output])[0];
            double s = 0;
            for (int i = 0; i < o.Length; i++) s += o[i] * r.Data[i];
            return s;
        }
        Assert.That(loss, Is.EqualTo(Loss(feeds)).Within(1e-9 + 1e-5 * Math.Abs(loss)), "loss value");

        foreach (var w in wrt)
        {
            var x = feeds[w];
            var g = analytic[w];
            Assert.That(g.Length, Is.EqualTo(x.Data.Length), $"gradient size of {w}");
            var coords = Enumerable.Range(0, x.Data.Length).ToList();
            if (coords.Count > maxCoordinates)
            {
                var pick = new SeededRandom(seed + 7);
                coords = coords.OrderBy(_ => pick.NextDouble()).Take(maxCoordinates).ToList();
            }
            var fd = new double[coords.Count];
            for (int k = 0; k < coords.Count; k++)
            {
                int i = coords[k];
                var plus = (double[])x.Data.Clone();
                var minus = (double[])x.Data.Clone();
                plus[i] += h;
                minus[i] -= h;
                var fp = new Dictionary<string, Tensor>(feeds) { [w] = x with { Data = plus } };
                var fm = new Dictionary<string, Tensor>(feeds) { [w] = x with { Data = minus } };
                fd[k] = (Loss(fp) - Loss(fm)) / (2 * h);
            }
            double scale = Math.Max(1e-3, fd.Max(Math.Abs));
            for (int k = 0; k < coords.Count; k++)
                Assert.That(g[coords[k]], Is.EqualTo(fd[k]).Within(rtol * scale),
                    $"d loss / d {w}[{coords[k]}]: analytic {g[coords[k]]}, finite difference {fd[k]}");
        }
        return analytic;
    }

    public static Dictionary<string, OrtValue> ToOrt(Dictionary<string, Tensor> feeds)
        => feeds.ToDictionary(kv => kv.Key, kv => ToOrt(kv.Value));

    public static OrtValue ToOrt(Tensor t) => t.ElemType switch
    {
        TinyModel.F64 => OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape),
        TinyModel.F32 => OrtValue.CreateTensorValueFromMemory(t.Data.Select(v => (float)v).ToArray(), t.Shape),
        TinyModel.I64 => OrtValue.CreateTensorValueFromMemory(t.Data.Select(v => (long)v).ToArray(), t.Shape),
        TinyModel.I32 => OrtValue.CreateTensorValueFromMemory(t.Data.Select(v => (int)v).ToArray(), t.Shape),
        _ => throw new ArgumentException("type"),
    };

    public static List<double[]> RunSession(InferenceSession session, Dictionary<string, Tensor> feeds, IReadOnlyList<string> outputs)
    {
        var values = feeds.ToDictionary(kv => kv.Key, kv => ToOrt(kv.Value));
        try
        {
            using var ro = new RunOptions();
            using var res = session.Run(ro, values.Keys.ToArray(), values.Values.ToArray(), outputs.ToArray());
            return res.Select(v => v.GetTensorTypeAndShape().ElementDataType switch
            {
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Double => v.GetTensorDataAsSpan<double>().ToArray(),
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float => v.GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray(),
                var other => throw new InvalidOperationException($"output type {other}"),
            }).ToList();
        }
        finally
        {
            foreach (var v in values.Values) v.Dispose();
        }
    }
}
