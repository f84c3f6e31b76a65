using Spm.Core.Gating;
using Spm.Core.Library;
using Spm.Core.Tensors;
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// SPMs loaded once for a model: the layout, the stacked membrane tensors and the injected UNet to load the pipeline
/// with (<see cref="UNetSource"/> for <see cref="PipelineOptions.UNetSource"/>). Per request, choose which SPMs act and
/// how with <see cref="CreateConditioner"/>; the session is never rebuilt.
/// </summary>
public sealed class LoadedSpms
{
    private LoadedSpms(MembraneLayout layout, MembraneTensors tensors, OnnxModelSource source)
    {
        Layout = layout;
        Tensors = tensors;
        UNetSource = source;
    }

    /// <summary>The loaded SPMs and their layers.</summary>
    public MembraneLayout Layout { get; }

    /// <summary>
    /// For each loaded set, the index of the file it came from (in the order given to <see cref="Load"/>): a merged file
    /// gives one set per concept, every other file one set.
    /// </summary>
    public IReadOnlyList<int> SetFiles { get; private set; } = [];

    /// <summary>Per-set values from per-file ones (e.g. a fixed multiplier given per file), following <see cref="SetFiles"/>.</summary>
    public IReadOnlyList<T> PerSet<T>(IReadOnlyList<T> perFile)
    {
        ArgumentNullException.ThrowIfNull(perFile);
        if (SetFiles.Count == 0) return perFile;
        return SetFiles.Select(f => perFile[f]).ToList();
    }

    /// <summary>The constant membrane inputs.</summary>
    public MembraneTensors Tensors { get; }

    /// <summary>The injected UNet (in memory; weights stay in the model folder's external data).</summary>
    public OnnxModelSource UNetSource { get; }

    /// <summary>Loads <paramref name="spmPaths"/> against the UNet of <paramref name="modelPath"/> (pipeline folder, UNet folder or file).</summary>
    /// <exception cref="Spm.Core.SpmMismatchException">An SPM does not fit (see <see cref="MembraneLayout.Create"/>).</exception>
    /// <param name="modelPath">Pipeline folder, UNet folder or UNet file.</param>
    /// <param name="spmPaths">The SPM files.</param>
    /// <param name="allowPartial">Apply the matching layers of an SPM that does not fully fit.</param>
    /// <param name="splitMerged">Load an exactly merged file (<see cref="SpmMerge"/>) as one set per concept, each gated on its own (see <see cref="SetFiles"/>).</param>
    public static LoadedSpms Load(string modelPath, IReadOnlyList<string> spmPaths, bool allowPartial = false, bool splitMerged = false)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentNullException.ThrowIfNull(spmPaths);
        var unet = OnnxModel.Load(modelPath);
        var layers = AdaptableLayerFinder.FindAll(unet);
        // With splitMerged, an exactly merged file expands into one set per concept (each gated on its own); SetFiles maps
        // them back. Without it, every file is one set (a merged file gates as one SPM over all its concepts), which is what
        // callers that index sets by file expect.
        var perFile = spmPaths.Select(p => splitMerged ? MembraneSetLoader.LoadAll(p, layers) : [MembraneSetLoader.Load(p, layers)]).ToList();
        var loaded = FromSets(unet, layers, perFile.SelectMany(s => s).ToList(), allowPartial);
        loaded.SetFiles = perFile.SelectMany((sets, file) => sets.Select(_ => file)).ToArray();
        return loaded;
    }

    /// <summary>
    /// Loads every SPM of a concept library (<see cref="SpmLibrary"/>) against the UNet of <paramref name="modelPath"/>,
    /// in the index's order, each set named by its concept: one injected UNet for the whole library, which
    /// <see cref="CreateRoutedConditioner"/> then serves any routed subset of without a rebuild.
    /// </summary>
    /// <exception cref="Spm.Core.SpmException">The library is empty, a file is missing or broken, or an SPM does not fit the model.</exception>
    public static LoadedSpms LoadLibrary(string modelPath, SpmLibrary library, bool allowPartial = false)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentNullException.ThrowIfNull(library);
        if (library.Entries.Count == 0) throw new Spm.Core.SpmException($"Library '{library.Directory}' is empty: add SPMs with 'spm library add'.");
        var unet = OnnxModel.Load(modelPath);
        var layers = AdaptableLayerFinder.FindAll(unet);
        var sets = library.Entries.Select(e =>
        {
            var path = library.PathOf(e);
            if (!File.Exists(path)) throw new Spm.Core.SpmInputNotFoundException(path, $"SPM file of library concept '{e.Concept}'");
            var set = MembraneSetLoader.Load(path, layers);
            return new MembraneSet(e.Concept, set.Concepts, set.Membranes) { GateProbe = set.GateProbe };
        }).ToList();
        return FromSets(unet, layers, sets, allowPartial);
    }

    private static LoadedSpms FromSets(OnnxModel unet, IReadOnlyList<AdaptableLayer> layers, IReadOnlyList<MembraneSet> sets, bool allowPartial)
    {
        var layout = MembraneLayout.Create(layers, sets, allowPartial);
        var injected = OnnxModel.FromProto(MembraneInjector.Inject(unet.Proto, layout), unet.BaseDirectory, unet.FilePath);
        var source = OnnxModelSource.FromBytes(injected.ToBytes(), unet.BaseDirectory, unet.FilePath + " (+SPM membranes)");
        return new LoadedSpms(layout, MembraneTensors.Build(layout), source);
    }

    /// <summary>
    /// A conditioner that routes: per prompt it reads every loaded SPM's gate in one batched pass
    /// (<see cref="LibraryGate"/>), keeps those whose gate opens (<paramref name="route"/>) and feeds the injected UNet
    /// only their membranes and gates.
    /// </summary>
    public RoutedSpmConditioner CreateRoutedConditioner(StableDiffusionPipeline pipeline, GateSettings settings, RouteOptions route, bool membranesOffInUnconditional = false)
        => new(this, pipeline, settings, route, membranesOffInUnconditional);

    /// <summary>
    /// A conditioner for requests on <paramref name="pipeline"/> (loaded with <see cref="UNetSource"/>):
    /// <paramref name="settings"/> holds one entry per SPM (gate curve, facilitate factor, or a fixed multiplier;
    /// a fixed 0 switches an SPM off).
    /// </summary>
    public SpmConditioner CreateConditioner(StableDiffusionPipeline pipeline, IReadOnlyList<GateSettings> settings, bool membranesOffInUnconditional = false)
        => new(this, pipeline, settings, membranesOffInUnconditional);
}

/// <summary>
/// Feeds the membranes and per-row gates to the pipeline's UNet (<see cref="IUNetConditioner"/>): each SPM's
/// multiplier comes from facilitated transport on the positive prompt (or is fixed); both guidance rows get the same
/// gates unless membranes are switched off in the unconditional row. Thread-safe.
/// </summary>
public sealed class SpmConditioner : IUNetConditioner
{
    private readonly LoadedSpms _spms;
    private readonly IReadOnlyList<GateSettings> _settings;
    private readonly bool _offInUnconditional;
    private readonly SpmGateEvaluator _evaluator;
    private readonly StableDiffusionPipeline _pipeline;

    internal SpmConditioner(LoadedSpms spms, StableDiffusionPipeline pipeline, IReadOnlyList<GateSettings> settings, bool offInUnconditional)
    {
        ArgumentNullException.ThrowIfNull(spms);
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Count != spms.Layout.Sets.Count)
            throw new ArgumentException($"Expected gate settings for {spms.Layout.Sets.Count} SPMs, got {settings.Count}.", nameof(settings));
        _spms = spms;
        _settings = settings;
        _offInUnconditional = offInUnconditional;
        _pipeline = pipeline;
        _evaluator = SpmGateEvaluator.For(pipeline);
    }

    /// <summary>The gates of every loaded SPM for <paramref name="prompt"/> (what a request with that prompt will use).</summary>
    public IReadOnlyList<SpmGate> GatesFor(string prompt)
    {
        var (ids, embedding) = _pipeline.EncodePrompt(prompt);
        return _evaluator.Evaluate(_evaluator.TextOf(ids, embedding.Data), _spms.Layout.Sets, _settings);
    }

    /// <summary>Text for the image parameters: <c>SPM: a.safetensors gate 0.53 (gamma 0.73), b.safetensors x0.8 (fixed)</c>.</summary>
    public static string Describe(IReadOnlyList<SpmGate> gates, bool offInUnconditional) =>
        "SPM: " + string.Join(", ", gates.Select(g => g.ToString())) + (offInUnconditional ? " [uncond off]" : "");

    /// <inheritdoc />
    public UNetConditioning Prepare(UNetConditioningContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var prompt = _evaluator.TextOf(context.PromptTokenIds, context.PromptEmbedding.Data);
        var gates = _evaluator.Evaluate(prompt, _spms.Layout.Sets, _settings);
        int n = gates.Count;
        var perRow = new float[context.BatchRows * n];
        for (int row = 0; row < context.BatchRows; row++)
        {
            bool off = _offInUnconditional && context.Rows[row] == GuidanceRow.Unconditional;
            for (int s = 0; s < n; s++) perRow[row * n + s] = off ? 0f : gates[s].Multiplier;
        }
        var inputs = new Dictionary<string, FloatTensor>(_spms.Tensors.Inputs, StringComparer.Ordinal)
        {
            [MembraneNames.Gates] = _spms.Tensors.Gates(perRow),
        };
        return new UNetConditioning(inputs, Describe(gates, _offInUnconditional));
    }
}
