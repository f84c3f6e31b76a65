using Spm.Diffusion.Onnx;
using Spm.Diffusion.Runtime;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Runtime;

public class OnnxSessionGroupTests
{
    private static string Vae => Path.Combine(TestPaths.TinySd1, "vae_decoder", "model.onnx");
    private static string TextEncoder => Path.Combine(TestPaths.TinySd1, "text_encoder", "model.onnx");

    [Test]
    public void ACudaRequest_MakesOneChoiceForTheGroup_FileAndInMemorySessionsAlike()
    {
        var requested = new OnnxRuntimeOptions { Provider = ExecutionProviderKind.Cuda, IntraOpThreads = 1 };
        var group = new OnnxSessionGroup(requested);
        using var first = group.OpenCreated(OnnxModelSource.FromFile(Vae));
        var model = OnnxModel.Load(TextEncoder);
        using var second = group.OpenCreated(OnnxModelSource.FromModel(model.Proto, model.BaseDirectory, "text encoder in memory"));

        Assert.That(group.Opened.Select(o => o.Provider), Is.EqualTo(new[] { first.Provider, first.Provider }));
        Assert.That(second.Provider, Is.EqualTo(first.Provider));
        if (first.Provider == ExecutionProviderKind.Cpu)
        {
            // No GPU here: the first session fell back; the group pinned the CPU, and every later session carries the reason.
            Assert.That(group.FallbackReason, Does.Contain("CUDA"));
            Assert.That(second.FallbackReason, Is.EqualTo(group.FallbackReason));
            Assert.That(group.Effective.Provider, Is.EqualTo(ExecutionProviderKind.Cpu));
        }
        Assert.That(group.Requested, Is.SameAs(requested), "the caller's options are kept, not changed");
        Assert.That(requested.Provider, Is.EqualTo(ExecutionProviderKind.Cuda));
        Assert.That(group.Opened.Select(o => o.Name), Is.EqualTo(new[] { Path.GetFullPath(Vae), "text encoder in memory" }));
    }

    [Test]
    public void Spinning_IsTheOptionElseSpmOrtSpin_AndDoesNotChangeResults()
    {
        var saved = Environment.GetEnvironmentVariable("SPM_ORT_SPIN");
        try
        {
            Environment.SetEnvironmentVariable("SPM_ORT_SPIN", "0");
            Assert.That(new OnnxRuntimeOptions().EffectiveAllowSpinning, Is.False);
            Assert.That(new OnnxRuntimeOptions { AllowSpinning = true }.EffectiveAllowSpinning, Is.True, "the option wins");
            Environment.SetEnvironmentVariable("SPM_ORT_SPIN", "on");
            Assert.That(new OnnxRuntimeOptions().EffectiveAllowSpinning, Is.True);
            Environment.SetEnvironmentVariable("SPM_ORT_SPIN", null);
            Assert.That(new OnnxRuntimeOptions().EffectiveAllowSpinning, Is.Null, "unset: ONNX Runtime's default");
        }
        finally
        {
            Environment.SetEnvironmentVariable("SPM_ORT_SPIN", saved);
        }

        // Two threads, spinning or not: the same latents decode to the same bits.
        var latents = new float[1 * 4 * 8 * 8];
        new Spm.Core.Randomness.SeededRandom(3).FillGaussian(latents);
        float[] Decode(bool spin)
        {
            using var created = OnnxSessionFactory.Create(OnnxModelSource.FromFile(Vae), new OnnxRuntimeOptions { IntraOpThreads = 2, AllowSpinning = spin });
            var input = created.Session.InputMetadata.Keys.Single();
            using var value = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(latents, [1, 4, 8, 8]);
            using var ro = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var results = created.Session.Run(ro, [input], [value], created.Session.OutputNames);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }
        var spinning = Decode(true);
        Assert.That(spinning.Any(v => v != 0), Is.True);
        Assert.That(Decode(false), Is.EqualTo(spinning));
    }

    [Test]
    public void ProfilingOption_WritesOnnxRuntimesTimingFile_WhenTheSessionEnds()
    {
        var dir = TestPaths.NewTempDir();
        var prefix = Path.Combine(dir, "vae");
        var created = OnnxSessionFactory.Create(OnnxModelSource.FromFile(Vae), new OnnxRuntimeOptions { IntraOpThreads = 1, ProfileOutputPrefix = prefix });
        var file = created.Session.EndProfiling();
        created.Dispose();
        Assert.That(File.Exists(file) ? file : Path.Combine(Environment.CurrentDirectory, file), Does.Exist);
        Assert.That(Path.GetFileName(file), Does.StartWith("vae"));

        // Empty turns profiling off whatever SPM_ORT_PROFILE says.
        Assert.That(new OnnxRuntimeOptions { ProfileOutputPrefix = "" }.EffectiveProfilePrefix, Is.Null);
    }
}
