using System.Text;
using Spm.Core.Randomness;
using Spm.Diffusion.Images;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Schedulers;
using Spm.Shapes.Building;
using Spm.Tests.Common;

namespace Spm.Diffusion.Tests.Reliability;

/// <summary>
/// Fuzzing the config readers of a model folder — <c>model_index.json</c>, <c>scheduler/scheduler_config.json</c>,
/// <c>unet/config.json</c> and <c>vae_decoder/config.json</c> through <see cref="ModelFolder.Open"/>, the UNet config
/// through <see cref="UNetConfig.Load"/> — and PNG parameters through <see cref="PngImage.ReadParameters"/>: mutated
/// valid files and hostile values (deep nesting, huge numbers, wrong types, huge strings, invalid UTF-8) either load
/// or fail with <c>SpmFormatException</c> naming the file and field. A folder that opens must also yield working
/// schedulers. <c>SPM_FUZZ_CASES</c> sets the cases per suite (CI default below), <c>SPM_FUZZ_SEED</c> the seed.
/// </summary>
[TestFixture]
[NonParallelizable] // CPU accounting per case is process-wide
public class ConfigFuzzTests
{
    private const int CiCases = 1000;
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = ScratchDir();

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static string ScratchDir()
    {
        // In RAM where there is one: the suites write a file per case.
        if (Directory.Exists("/dev/shm"))
            return Directory.CreateDirectory(Path.Combine("/dev/shm", $"spm-cfgfuzz-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName;
        return TestPaths.NewTempDir("spm-cfgfuzz");
    }

    private static readonly string[] SchedulerKeys =
    [
        "_class_name", "beta_end", "beta_schedule", "beta_start", "num_train_timesteps", "prediction_type", "set_alpha_to_one",
        "skip_prk_steps", "steps_offset", "trained_betas", "clip_sample", "clip_sample_range", "timestep_spacing", "use_karras_sigmas",
    ];

    private static readonly string[] ModelIndexKeys = ["_class_name", "text_encoder", "tokenizer", "unet", "vae_decoder", "scheduler"];

    private static readonly string[] UNetKeys =
    [
        "sample_size", "in_channels", "out_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "up_block_types",
        "block_out_channels", "layers_per_block", "downsample_padding", "norm_num_groups", "norm_eps", "cross_attention_dim",
        "attention_head_dim", "use_linear_projection", "conv_in_kernel", "conv_out_kernel", "transformer_layers_per_block",
        "only_cross_attention", "dual_cross_attention", "class_embed_type", "resnet_time_scale_shift", "time_embedding_type", "mid_block_type",
    ];

    private static readonly string[] VaeKeys = ["scaling_factor", "block_out_channels", "latent_channels", "_class_name"];

    private const string VaeConfig = """
        {
         "_class_name": "AutoencoderKL",
         "block_out_channels": [32, 64],
         "latent_channels": 4,
         "scaling_factor": 0.18215
        }
        """;

    private static byte[] Fixture(params string[] parts) => File.ReadAllBytes(Path.Combine([TestPaths.TinySd1, .. parts]));

    [Test]
    public void ModelFolderConfigs_LoadOrFailNamingFileAndField()
    {
        // A folder with the real config files and empty model files (Open only checks that they exist).
        var root = Path.Combine(_dir, "model");
        var files = new (string Rel, byte[] Seed, string[] Keys)[]
        {
            ("model_index.json", Fixture("model_index.json"), ModelIndexKeys),
            (Path.Combine("scheduler", "scheduler_config.json"), Fixture("scheduler", "scheduler_config.json"), SchedulerKeys),
            (Path.Combine("unet", "config.json"), Fixture("unet", "config.json"), UNetKeys),
            (Path.Combine("vae_decoder", "config.json"), Encoding.UTF8.GetBytes(VaeConfig), VaeKeys),
        };
        foreach (var d in new[] { "scheduler", "tokenizer", "text_encoder", "unet", "vae_decoder" }) Directory.CreateDirectory(Path.Combine(root, d));
        foreach (var m in new[] { "text_encoder", "unet", "vae_decoder" }) File.WriteAllBytes(Path.Combine(root, m, "model.onnx"), []);
        foreach (var f in files) File.WriteAllBytes(Path.Combine(root, f.Rel), f.Seed);
        Assert.That(ModelFolder.Open(root).UNetSampleSize, Is.EqualTo(32), "the seed folder opens");

        var rng = new SeededRandom(TextFuzz.Seed(811));
        var mutators = files.Select(f => new TextFuzz(rng, f.Keys)).ToArray();
        int cases = TextFuzz.Cases(CiCases);
        var report = new TextFuzz.Report("model folder configs");
        for (int i = 0; i < cases; i++)
        {
            int which = rng.NextInt(0, files.Length);
            var (rel, seed, _) = files[which];
            var path = Path.Combine(root, rel);
            File.WriteAllBytes(path, mutators[which].Mutate(seed));
            TextFuzz.Check(report, i, rel + ": " + mutators[which].LastDescription, path, () =>
            {
                var folder = ModelFolder.Open(root);
                // Whatever opens must be usable: every scheduler builds its timesteps from the config.
                foreach (var name in SchedulerRegistry.Names)
                {
                    var s = SchedulerRegistry.Create(name, folder.SchedulerConfig);
                    s.SetTimesteps(20);
                    if (s.Timesteps.Count == 0) throw new InvalidOperationException($"{name}: no timesteps");
                }
            });
            File.WriteAllBytes(path, seed);
        }
        TestContext.Progress.WriteLine(report.Summary(cases));
        Assert.That(report.Failures, Is.Empty, string.Join("\n", report.Failures));
        Assert.That(report.Accepted, Is.GreaterThan(cases / 50), "some mutated folders must still open (the suite must reach the value checks)");
        Assert.That(report.Rejected, Is.GreaterThan(cases / 10));
    }

    [Test]
    public void UNetConfig_LoadsOrFailsNamingFileAndField()
    {
        var path = Path.Combine(_dir, "config.json");
        byte[][] seeds = [Fixture("unet", "config.json"), Encoding.UTF8.GetBytes(UNetPresets.Sd21.ToJson().ToJsonString())];
        var rng = new SeededRandom(TextFuzz.Seed(812));
        var fuzz = new TextFuzz(rng, UNetKeys);
        int cases = TextFuzz.Cases(CiCases);
        var report = new TextFuzz.Report("unet config.json");
        for (int i = 0; i < cases; i++)
        {
            File.WriteAllBytes(path, fuzz.Mutate(seeds[i % seeds.Length]));
            TextFuzz.Check(report, i, fuzz.LastDescription, path, () => UNetConfig.Load(path));
        }
        TestContext.Progress.WriteLine(report.Summary(cases));
        Assert.That(report.Failures, Is.Empty, string.Join("\n", report.Failures));
        Assert.That(report.Accepted, Is.GreaterThan(cases / 50));
    }

    [Test]
    public void PngParameters_ReadOrFailNamingTheFile()
    {
        var rgb = new byte[16 * 16 * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7);
        var seed = PngImage.Encode(rgb, 16, 16, "a photo of a cat\nSteps: 20, Sampler: PNDM, CFG scale: 7.5, Seed: 1, Size: 16x16");
        var path = Path.Combine(_dir, "image.png");
        var rng = new SeededRandom(TextFuzz.Seed(813));
        var fuzz = new TextFuzz(rng, ["parameters", "tEXt", "IHDR", "IDAT", "IEND"]);
        int cases = TextFuzz.Cases(CiCases / 2);
        var report = new TextFuzz.Report("PNG parameters");
        for (int i = 0; i < cases; i++)
        {
            File.WriteAllBytes(path, fuzz.Mutate(seed));
            TextFuzz.Check(report, i, fuzz.LastDescription, path, () => PngImage.ReadParameters(path));
        }
        TestContext.Progress.WriteLine(report.Summary(cases));
        Assert.That(report.Failures, Is.Empty, string.Join("\n", report.Failures));
    }
}
