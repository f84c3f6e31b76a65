using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Text;
using Spm.Shapes.Model;
using Spm.Tests.Common;

namespace Spm.Training.Tests.Shapes;

[TestFixture]
[Parallelizable(ParallelScope.All)] // every test trains in a scratch folder of its own
public class TinyShapesModelTests
{
    // One optimized-graph cache for every build here: their gradient graphs share architectures and batches, so each is
    // optimized by ONNX Runtime once instead of once per build (results are bit-identical with or without the cache;
    // the resume test below compares fresh and cache-loaded graphs byte for byte).
    private static readonly string GraphCache = TestPaths.NewTempDir("spm-tinyshapes-graphs");

    [OneTimeTearDown]
    public void RemoveGraphCache()
    {
        if (Directory.Exists(GraphCache)) Directory.Delete(GraphCache, recursive: true);
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task AShortRun_WritesAPipelineFolderThatGenerates64PixelImages()
    {
        var dir = Path.Combine(Path.GetTempPath(), "spm-tinyshapes-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = new TinyShapesTrainingOptions { GraphCacheFolder = GraphCache, AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 2, UNetStages = [new(2, 1e-3)], UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1 };
            var phases = new HashSet<string>();
            var report = await TinyShapesModel.TrainAsync(dir, Path.Combine(TestPaths.Shared, "clip-tokenizer"), options,
                progress: new SyncProgress<TinyShapesProgress>(p => phases.Add(p.Phase)));
            Assert.That(phases, Is.EquivalentTo(new[] { "autoencoder", "decoder", "encode", "unet" }));
            Assert.That(report.AutoencoderLosses, Has.Count.EqualTo(2));
            Assert.That(report.DecoderLosses, Has.Count.EqualTo(2));
            Assert.That(report.UNetLosses, Has.Count.EqualTo(2));
            Assert.That(report.ScalingFactor, Is.GreaterThan(0));

            var folder = ModelFolder.Open(dir);
            Assert.That(folder.VaeScalingFactor, Is.EqualTo(report.ScalingFactor).Within(1e-9));
            using var pipeline = StableDiffusionPipeline.Load(dir);
            var result = await pipeline.GenerateAsync(new GenerationRequest { Prompt = "a red circle", Steps = 3, Width = 64, Height = 64, Seed = 1 });
            Assert.That(result.Images[0].Width, Is.EqualTo(64));
            Assert.That(result.Images[0].Height, Is.EqualTo(64));

            var ex = Assert.ThrowsAsync<Spm.Core.SpmException>(() => TinyShapesModel.TrainAsync(dir, Path.Combine(TestPaths.Shared, "clip-tokenizer"), options));
            Assert.That(ex!.Message, Does.Contain("already exists"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task SnapshotsRebuildTheSameModelWithoutTraining_AndTheTextEncoderSeparatesWords()
    {
        await InScratchFolder(async root =>
        {
            var options = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 2, UNetStages = [new(2, 1e-3, 0.02), new(1, 5e-4)], UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1,
                WorkFolder = Path.Combine(root, "work"), SnapshotEvery = 1, TextTokenStd = 1.0,
            };
            await TinyShapesModel.TrainAsync(Path.Combine(root, "a"), Tokenizer, options);
            Assert.That(Directory.GetFiles(options.WorkFolder!).Select(Path.GetFileName),
                Is.EquivalentTo(new[] { "autoencoder.safetensors", "decoder.safetensors", "unet.safetensors", "unet-resume.safetensors" }));

            // 0 UNet steps + continue: every phase comes from its snapshot, so the written model is byte-identical.
            var phases = new HashSet<string>();
            var report = await TinyShapesModel.TrainAsync(Path.Combine(root, "b"), Tokenizer, options with { UNetStages = [], ContinueUNet = true },
                progress: new SyncProgress<TinyShapesProgress>(p => phases.Add(p.Phase)));
            Assert.That(report.DecoderLosses, Is.Empty, "the decoder snapshot is reused");
            Assert.That(report.UNetLosses, Is.Empty);
            Assert.That(phases, Does.Not.Contain("unet"));
            foreach (var part in new[] { "unet/model.onnx", "vae_decoder/model.onnx", "text_encoder/model.onnx", "vae_decoder/config.json" })
                Assert.That(File.ReadAllBytes(Path.Combine(root, "b", part)), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", part))), part);

            Assert.That(() => new TinyShapesTrainingOptions { UNetStages = [] }.Validate(), Throws.TypeOf<Spm.Core.SpmException>().With.Message.Contains("--continue-unet"));

            // Two stages in one run equal a run of the first stage continued by a run of the second (--continue-unet), also
            // when the stages use different token scales (the first on CLIP's 0.02, the second on the options' 1).
            var split = options with { WorkFolder = Path.Combine(root, "work2"), UNetStages = [new(2, 1e-3, 0.02)] };
            await TinyShapesModel.TrainAsync(Path.Combine(root, "c"), Tokenizer, split);
            await TinyShapesModel.TrainAsync(Path.Combine(root, "d"), Tokenizer, split with { UNetStages = [new(1, 5e-4)], ContinueUNet = true });
            Assert.That(File.ReadAllBytes(Path.Combine(root, "d", "unet/model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", "unet/model.onnx"))));
            Assert.That(File.ReadAllBytes(Path.Combine(root, "d", "text_encoder/model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", "text_encoder/model.onnx"))));
            Assert.That(File.ReadAllBytes(Path.Combine(root, "c", "text_encoder/model.onnx")), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", "text_encoder/model.onnx"))),
                "the written text encoder is the last stage's (0.02 in c, 1 in a)");
            Assert.That(() => (options with { UNetStages = [new(1, 1e-3, 0)] }).Validate(), Throws.TypeOf<Spm.Core.SpmException>().With.Message.Contains("token standard deviation"));

            // The written text encoder is the one the UNet was trained on: token vectors of std 1 dominate, so two captions
            // differing in one word differ clearly at that word's position (CLIP's 0.02 gives cosine ~0.99 there).
            using var text = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(root, "a", "text_encoder", "model.onnx"));
            var tok = ClipTokenizer.Load(Tokenizer);
            float[] Embed(string caption)
            {
                var ids = tok.Encode(caption);
                using var input = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]);
                using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
                using var result = text.Run(runOptions, ["input_ids"], [input], ["last_hidden_state"]);
                return result[0].GetTensorDataAsSpan<float>().ToArray();
            }
            var white = Embed("a red circle on a white background");
            var black = Embed("a red circle on a black background");
            int width = TinyShapesModel.Preset.TextEncoder.Width, position = 6; // BOS a red circle on a [white|black]
            double dot = 0, nw = 0, nb = 0;
            for (int i = position * width; i < (position + 1) * width; i++) { dot += white[i] * black[i]; nw += white[i] * white[i]; nb += black[i] * black[i]; }
            Assert.That(dot / Math.Sqrt(nw * nb), Is.LessThan(0.6));
        });
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task TrainingTheTextEncoder_ChangesEveryWeightButTheTokenTable_AndContinuesFromItsSnapshot()
    {
        await InScratchFolder(async root =>
        {
            var frozen = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 1, UNetStages = [new(2, 1e-3)], UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1,
                WorkFolder = Path.Combine(root, "work-frozen"), TextTokenStd = 1.0,
            };
            var joint = frozen with { WorkFolder = Path.Combine(root, "work-joint"), TrainTextEncoder = true };
            await TinyShapesModel.TrainAsync(Path.Combine(root, "frozen"), Tokenizer, frozen);
            await TinyShapesModel.TrainAsync(Path.Combine(root, "joint"), Tokenizer, joint);
            Assert.That(File.Exists(Path.Combine(joint.WorkFolder!, "text_encoder.safetensors")));
            Assert.That(File.Exists(Path.Combine(frozen.WorkFolder!, "text_encoder.safetensors")), Is.False);

            var before = Weights(Path.Combine(root, "frozen", "text_encoder", "model.onnx"));
            var after = Weights(Path.Combine(root, "joint", "text_encoder", "model.onnx"));
            Assert.That(after.Keys, Is.EquivalentTo(before.Keys));
            Assert.That(after["tok.weight"], Is.EqualTo(before["tok.weight"]), "the token table stays frozen");
            var changed = before.Keys.Where(k => k != "tok.weight" && !after[k].SequenceEqual(before[k])).ToList();
            Assert.That(changed, Has.Count.EqualTo(before.Count - 1), "every other weight moved: " + string.Join(", ", before.Keys.Except(changed)));

            // The written pipeline is the trained one: 0 more steps from the snapshots writes the same bytes.
            await TinyShapesModel.TrainAsync(Path.Combine(root, "again"), Tokenizer, joint with { UNetStages = [], ContinueUNet = true });
            foreach (var part in new[] { "unet/model.onnx", "text_encoder/model.onnx" })
                Assert.That(File.ReadAllBytes(Path.Combine(root, "again", part)), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "joint", part))), part);
        });
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task AStageThatTrainsTheTextEncoder_IsKeptByLaterStages_AndEqualsTheSameStagesRunInSittings()
    {
        await InScratchFolder(async root =>
        {
            var options = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 1, UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1,
                WorkFolder = Path.Combine(root, "work-one"), TextTokenStd = 1.0,
                UNetStages = [new(2, 1e-3), new(2, 1e-3, null, TrainTextEncoder: true), new(2, 5e-4)], // 2 steps each: the first is warm-up at rate 0
            };
            await TinyShapesModel.TrainAsync(Path.Combine(root, "one"), Tokenizer, options);

            // The same three stages in three sittings: the middle one writes the text snapshot, the last one (frozen)
            // loads it, so the UNet it trains reads the trained encoder's states, not the seeded one's.
            var sittings = options with { WorkFolder = Path.Combine(root, "work-three") };
            await TinyShapesModel.TrainAsync(Path.Combine(root, "s1"), Tokenizer, sittings with { UNetStages = [options.UNetStages[0]] });
            Assert.That(File.Exists(Path.Combine(sittings.WorkFolder!, "text_encoder.safetensors")), Is.False, "a frozen stage leaves the encoder seeded");
            await TinyShapesModel.TrainAsync(Path.Combine(root, "s2"), Tokenizer, sittings with { UNetStages = [options.UNetStages[1]], ContinueUNet = true });
            await TinyShapesModel.TrainAsync(Path.Combine(root, "s3"), Tokenizer, sittings with { UNetStages = [options.UNetStages[2]], ContinueUNet = true });
            foreach (var part in new[] { "unet/model.onnx", "text_encoder/model.onnx" })
                Assert.That(File.ReadAllBytes(Path.Combine(root, "s3", part)), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "one", part))), part);

            var seeded = Weights(Path.Combine(root, "s1", "text_encoder", "model.onnx"));
            var trained = Weights(Path.Combine(root, "one", "text_encoder", "model.onnx"));
            Assert.That(trained["tok.weight"], Is.EqualTo(seeded["tok.weight"]));
            Assert.That(seeded.Keys.Count(k => !trained[k].SequenceEqual(seeded[k])), Is.EqualTo(seeded.Count - 1), "the middle stage trained the encoder");
            Assert.That(Weights(Path.Combine(root, "s2", "text_encoder", "model.onnx")), Is.EqualTo(trained), "the last stage does not change it");
            Assert.That(Weights(Path.Combine(root, "s2", "unet", "model.onnx")), Is.Not.EqualTo(Weights(Path.Combine(root, "one", "unet", "model.onnx"))));
        });
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task APipelineShipsItsEncoder_AndABuildFromItUsesThatEncoderInsteadOfTrainingOne()
    {
        await InScratchFolder(async root =>
        {
            var options = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 1, UNetStages = [new(1, 1e-3)], UNetBatch = 2, LatentPoolSize = 2, WarmupSteps = 1,
                AutoencoderCheckImages = 3,
            };
            string first = Path.Combine(root, "first"), second = Path.Combine(root, "second");
            var report = await TinyShapesModel.TrainAsync(first, Tokenizer, options);
            Assert.That(File.Exists(Path.Combine(first, "vae_encoder", "model.onnx")));
            Assert.That(File.ReadAllText(Path.Combine(first, "model_index.json")), Does.Contain("\"vae_encoder\""));
            Assert.That(report.ReconstructionFidelity!.Images, Is.EqualTo(3));
            Assert.That(report.ReconstructionFidelity.Confusion.Single(c => c.Attribute == "shape").Counts.Sum(r => r.Sum()), Is.LessThanOrEqualTo(3));

            // The shipped encoder reads pictures as the names diffusers' ONNX export uses.
            using (var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(first, "vae_encoder", "model.onnx")))
            {
                Assert.That(session.InputMetadata.Keys, Is.EqualTo(new[] { "sample" }));
                Assert.That(session.OutputMetadata.Keys, Is.EqualTo(new[] { "latent_sample" }));
            }

            // The base's sampling choices, as a shipped model has them (another scheduler, defaults files).
            Assert.That(File.Exists(Path.Combine(first, "spm_generate_defaults.json")), Is.False, "a build from scratch writes none");
            var dpm = """{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "num_train_timesteps": 1000}""";
            File.WriteAllText(Path.Combine(first, "scheduler", "scheduler_config.json"), dpm);
            var baseIndex = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(first, "model_index.json")))!;
            baseIndex["scheduler"] = new System.Text.Json.Nodes.JsonArray("diffusers", "DPMSolverMultistepScheduler");
            File.WriteAllText(Path.Combine(first, "model_index.json"), baseIndex.ToJsonString());
            File.WriteAllText(Path.Combine(first, "spm_generate_defaults.json"), """{"guidance_scale": 3, "steps": 30}""");

            var phases = new List<string>();
            var continued = await TinyShapesModel.TrainAsync(second, Tokenizer, options with { BaseModel = first, DecoderSteps = 0, AutoencoderCheckImages = 0 },
                progress: new SyncProgress<TinyShapesProgress>(p => phases.Add(p.Phase)));
            Assert.That(continued.AutoencoderLosses, Is.Empty, "the base pipeline's encoder is taken, not trained");
            Assert.That(phases, Does.Contain("encoder"));
            Assert.That(continued.ReconstructionFidelity, Is.Null);
            Assert.That(File.ReadAllBytes(Path.Combine(second, "vae_encoder", "model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(first, "vae_encoder", "model.onnx"))));
            Assert.That(File.ReadAllBytes(Path.Combine(second, "vae_decoder", "model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(first, "vae_decoder", "model.onnx"))));
            // The continuation samples as its base did.
            Assert.That(File.ReadAllText(Path.Combine(second, "scheduler", "scheduler_config.json")), Is.EqualTo(dpm));
            Assert.That(File.ReadAllText(Path.Combine(second, "spm_generate_defaults.json")), Is.EqualTo(File.ReadAllText(Path.Combine(first, "spm_generate_defaults.json"))));
            var index = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(second, "model_index.json")))!;
            Assert.That(index["scheduler"]![1]!.GetValue<string>(), Is.EqualTo("DPMSolverMultistepScheduler"));
            Assert.That(index["vae_encoder"], Is.Not.Null);
            Assert.That(File.Exists(Path.Combine(second, "spm_train_defaults.json")), Is.False, "only the files the base has");

            // A world in another style trains the shipped encoder further (against the frozen decoder).
            var restyled = await TinyShapesModel.TrainAsync(Path.Combine(root, "third"), Tokenizer, options with
            {
                BaseModel = first, DecoderSteps = 0, AutoencoderCheckImages = 0, TrainBaseEncoder = true,
                World = options.World with { Style = Spm.Shapes.World.ShapeStyle.Outlined },
            });
            Assert.That(restyled.AutoencoderLosses, Has.Count.EqualTo(2));
            Assert.That(File.ReadAllBytes(Path.Combine(root, "third", "vae_encoder", "model.onnx")), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(first, "vae_encoder", "model.onnx"))));
            Assert.That(File.ReadAllBytes(Path.Combine(root, "third", "vae_decoder", "model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(first, "vae_decoder", "model.onnx"))));
        });
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task AnAutoencoderOnlyRun_StopsBeforeTheUNet_AndWritesNoPipeline()
    {
        await InScratchFolder(async root =>
        {
            var options = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 1, UNetStages = [new(1, 1e-3)], UNetBatch = 2, LatentPoolSize = 2, WarmupSteps = 1,
                WorkFolder = Path.Combine(root, "work"), AutoencoderOnly = true, AutoencoderCheckImages = 4,
            };
            var phases = new HashSet<string>();
            var report = await TinyShapesModel.TrainAsync(Path.Combine(root, "out"), Tokenizer, options,
                progress: new SyncProgress<TinyShapesProgress>(p => phases.Add(p.Phase)));
            Assert.That(phases, Is.EquivalentTo(new[] { "autoencoder", "decoder", "check" }));
            Assert.That(Directory.Exists(Path.Combine(root, "out")), Is.False);
            Assert.That(File.Exists(Path.Combine(root, "work", "decoder.safetensors")));
            Assert.That(report.ReconstructionFidelity!.Images, Is.EqualTo(4));
            Assert.That(report.UNetLosses, Is.Empty);
            Assert.Throws<Spm.Core.SpmException>(() => (options with { AutoencoderCheckImages = -1 }).Validate());
        });
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task AnAutoencoderTrainedWithChromaWeightAndLatentNoise_IsReusedOnlyWithTheSameSettings()
    {
        await InScratchFolder(async root =>
        {
            var plain = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 0, UNetStages = [new(1, 1e-3)], UNetBatch = 2, LatentPoolSize = 2, WarmupSteps = 1,
                WorkFolder = Path.Combine(root, "work"), AutoencoderChromaWeight = 0,
            };
            var tuned = plain with { AutoencoderChromaWeight = 3, AutoencoderLatentNoise = 0.3 };
            var first = await TinyShapesModel.TrainAsync(Path.Combine(root, "a"), Tokenizer, tuned);
            Assert.That(first.AutoencoderLosses, Has.Count.EqualTo(2));
            Assert.That(first.AutoencoderLosses.All(double.IsFinite));
            var again = await TinyShapesModel.TrainAsync(Path.Combine(root, "b"), Tokenizer, tuned);
            Assert.That(again.AutoencoderLosses, Is.Empty, "same settings: the snapshot is reused");
            Assert.That(File.ReadAllBytes(Path.Combine(root, "b", "vae_decoder", "model.onnx")), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", "vae_decoder", "model.onnx"))));
            var other = await TinyShapesModel.TrainAsync(Path.Combine(root, "c"), Tokenizer, plain);
            Assert.That(other.AutoencoderLosses, Has.Count.EqualTo(2), "other settings: trained again, not taken from the snapshot");
            Assert.That(File.ReadAllBytes(Path.Combine(root, "c", "vae_decoder", "model.onnx")), Is.Not.EqualTo(File.ReadAllBytes(Path.Combine(root, "a", "vae_decoder", "model.onnx"))));
        });
    }

    [Test]
    public void TheOpponentBasis_IsOrthonormalAtWeightOne_AndScalesOnlyTheChromaAxes()
    {
        var m = TinyShapesModel.OpponentMatrix(1f);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
            {
                double dot = 0;
                for (int k = 0; k < 3; k++) dot += m[3 * r + k] * m[3 * c + k];
                Assert.That(dot, Is.EqualTo(r == c ? 1.0 : 0.0).Within(1e-6), $"rows {r}, {c}");
            }
        // Grey has no chroma at any weight; orange and yellow differ mostly in chroma.
        var w3 = TinyShapesModel.OpponentMatrix(3f);
        float[] grey = [0.5f, 0.5f, 0.5f], out3 = new float[3], out1 = new float[3];
        TinyShapesModel.ApplyColourMatrix(w3, grey, out3, 1, 1);
        Assert.That(out3[1..], Is.EqualTo(new[] { 0f, 0f }).Within(1e-6));
        Assert.That(out3[0], Is.EqualTo(0.5 * Math.Sqrt(3)).Within(1e-6));
        float[] diff = [1.00f - 0.95f, 0.55f - 0.85f, 0.05f - 0.10f];
        TinyShapesModel.ApplyColourMatrix(w3, diff, out3, 1, 1);
        TinyShapesModel.ApplyColourMatrix(m, diff, out1, 1, 1);
        Assert.That(out3[0], Is.EqualTo(out1[0]).Within(1e-6));
        Assert.That(out3[1], Is.EqualTo(3 * out1[1]).Within(1e-6));
        Assert.That(out3[2], Is.EqualTo(3 * out1[2]).Within(1e-6));
        Assert.That(() => new TinyShapesTrainingOptions { AutoencoderChromaWeight = -1 }.Validate(),
            Throws.TypeOf<Spm.Core.SpmException>().With.Message.Contains("chroma weight"));
    }

    [Test]
    [Category(TestCategories.Slow)]
    public async Task ABuildInterruptedThreeTimes_AndResumed_EqualsTheUninterruptedBuild_ByteForByte()
    {
        await InScratchFolder(async root =>
        {
            var options = new TinyShapesTrainingOptions
            {
                GraphCacheFolder = GraphCache,
                AutoencoderSteps = 2, AutoencoderBatch = 2, DecoderSteps = 1, UNetBatch = 2, LatentPoolSize = 4, WarmupSteps = 1,
                SnapshotEvery = 2, TextTokenStd = 1.0, WorkFolder = Path.Combine(root, "work-one"),
                // A token scale that changes after the first stage, a stage that trains the text encoder, a frozen one after it.
                UNetStages = [new(3, 1e-3, 0.02), new(3, 1e-3, null, TrainTextEncoder: true), new(3, 5e-4)],
            };
            var whole = await TinyShapesModel.TrainAsync(Path.Combine(root, "one"), Tokenizer, options);

            var interrupted = options with { WorkFolder = Path.Combine(root, "work-two"), Resume = true };
            // Stop at the end of stage 1 (resume point: the stage's end), in the middle of the text stage (step 2 of 3, with
            // the encoder's weights and the optimizer's moments), and in the middle of the last, frozen stage.
            foreach (var (phase, step) in new[] { ("unet 1/3", 3), ("unet 2/3", 2), ("unet 3/3", 2) })
            {
                using var cts = new CancellationTokenSource();
                var stop = new SyncProgress<TinyShapesProgress>(p => { if (p.Phase == phase && p.Step == step && p.StepsPerSecond > 0) cts.Cancel(); });
                Assert.That(async () => await TinyShapesModel.TrainAsync(Path.Combine(root, "two"), Tokenizer, interrupted, progress: stop, cancellationToken: cts.Token),
                    Throws.InstanceOf<OperationCanceledException>(), phase);
                Assert.That(Directory.Exists(Path.Combine(root, "two")), Is.False, "nothing written before the end");
            }
            var phases = new List<TinyShapesProgress>();
            var resumed = await TinyShapesModel.TrainAsync(Path.Combine(root, "two"), Tokenizer, interrupted, progress: new SyncProgress<TinyShapesProgress>(phases.Add));
            Assert.That(phases.Where(p => p.Phase.StartsWith("unet", StringComparison.Ordinal) && p.StepsPerSecond > 0).Select(p => (p.Phase, p.Step)),
                Is.EqualTo(new[] { ("unet 3/3", 3) }), "only the last step was left to train");
            foreach (var part in new[] { "unet/model.onnx", "text_encoder/model.onnx", "vae_decoder/model.onnx" })
                Assert.That(File.ReadAllBytes(Path.Combine(root, "two", part)), Is.EqualTo(File.ReadAllBytes(Path.Combine(root, "one", part))), part);
            Assert.That(resumed.UNetLosses, Is.EqualTo(whole.UNetLosses), "the loss log is restored with the weights");

            // Another build's options are refused, naming the resume file.
            var other = interrupted with { UNetStages = [new(3, 2e-3, 0.02), options.UNetStages[1], options.UNetStages[2]] };
            Assert.That(async () => await TinyShapesModel.TrainAsync(Path.Combine(root, "three"), Tokenizer, other),
                Throws.TypeOf<Spm.Core.SpmException>().With.Message.Contains("unet-resume.safetensors").And.Message.Contains("other options"));
            Assert.That(() => (options with { Resume = true, WorkFolder = null }).Validate(), Throws.TypeOf<Spm.Core.SpmException>().With.Message.Contains("--work-dir"));
        });
    }

    private static string Tokenizer => Path.Combine(TestPaths.Shared, "clip-tokenizer");

    /// <summary>Runs <paramref name="body"/> with a fresh folder under the temp path, deleted afterwards.</summary>
    private static async Task InScratchFolder(Func<string, Task> body)
    {
        var root = Path.Combine(Path.GetTempPath(), "spm-tinyshapes-" + Guid.NewGuid().ToString("N"));
        try
        {
            await body(root);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    private static Dictionary<string, float[]> Weights(string onnxFile)
    {
        var model = Spm.Diffusion.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(onnxFile));
        return model.Graph.Initializer.Where(t => t.DataType == 1).ToDictionary(t => t.Name,
            t => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray());
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
