using System.CommandLine;
using System.Globalization;
using Spm.Cli.Rendering;
using Spm.Core;
using Spm.Core.Gating;
using Spm.Core.Membranes;
using Spm.Diffusion.Membranes;
using Spm.Diffusion.Pipelines;
using Spm.Diffusion.Runtime;
using Spm.Shapes.Attacks;
using Spm.Shapes.Evaluation;
using Spm.Shapes.World;
using Spm.Training.Attacks;
using Spm.Training.Evaluation;
using Spm.Training.Gating;

namespace Spm.Cli.Commands;

/// <summary>
/// <c>spm gate fit</c>: fits each SPM's learned gate from the model's own drawings; <c>spm gate show</c>: prints every
/// SPM's gate for prompts under each way of reading it.
/// </summary>
internal static class GateCommand
{
    public static Command Create(CliConsole console)
    {
        var cmd = new Command("gate", "The learned facilitated-transport gate: fit it from the model's own drawings (fit), or read gates for prompts (show).");
        cmd.Subcommands.Add(Fit(console));
        cmd.Subcommands.Add(Show(console));
        cmd.Subcommands.Add(Set(console));
        return cmd;
    }

    /// <summary>
    /// <c>spm gate set FILE --closed P [--open P] [--strength S] (--out FILE | --in-place)</c>: recalibrates a fitted gate
    /// without refitting it: the probe is kept, only the probabilities at which it shuts and fully opens, or the
    /// membrane's strength at a fully open gate, change. The tensors are copied unchanged.
    /// </summary>
    private static Command Set(CliConsole console)
    {
        var file = new Argument<string>("file") { Description = "An SPM file with a learned gate (metadata 'gate_probe', written by spm gate fit)." };
        var closed = new Option<float?>("--closed") { Description = "Probability at or below which the gate stays shut (default: the file's)." };
        var open = new Option<float?>("--open") { Description = "Probability at or above which the gate is fully open (default: the file's)." };
        var strength = new Option<float?>("--strength") { Description = "The membrane's multiplier when the gate is fully open (default: the file's)." };
        var output = new Option<string?>("--out") { Description = "Write the recalibrated SPM to this file." };
        var inPlace = new Option<bool>("--in-place") { Description = "Rewrite FILE itself (atomically)." };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing --out file." };
        var cmd = new Command("set", "Recalibrate a fitted gate without refitting it: the probability at which it shuts (--closed) or fully opens (--open), or the membrane's strength when open.");
        cmd.Arguments.Add(file);
        foreach (var o in new Option[] { closed, open, strength, output, inPlace, force }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            var target = parse.GetValue(output);
            bool place = parse.GetValue(inPlace);
            if ((target is null) == !place) throw new SpmException("say where the recalibrated SPM goes: --out FILE, or --in-place.");
            float? shut = parse.GetValue(closed), full = parse.GetValue(open), multiplier = parse.GetValue(strength);
            if (shut is null && full is null && multiplier is null) throw new SpmException("nothing to change: give --closed, --open or --strength.");
            if (multiplier is { } m && !(m > 0 && float.IsFinite(m))) throw new SpmException($"--strength must be a positive number, got {m}.");
            var adapter = SpmFile.Load(path);
            if (!adapter.Config.Extra.TryGetValue(ConceptProbe.MetadataKey, out var json))
                throw new SpmException($"'{path}' has no learned gate (metadata '{ConceptProbe.MetadataKey}'): fit one with spm gate fit.");
            var before = ConceptProbe.FromJson(json, path);
            float c = shut ?? before.Closed, o = full ?? before.Open;
            if (!(c >= 0 && c < o && o <= 1))
                throw new SpmException($"the gate thresholds must satisfy 0 <= closed < open <= 1, got closed {c.ToString(CultureInfo.InvariantCulture)} and open {o.ToString(CultureInfo.InvariantCulture)}.");
            var after = before.WithThresholds(c, o).WithStrength(multiplier ?? before.Strength);
            var extra = new Dictionary<string, string>(adapter.Config.Extra, StringComparer.Ordinal) { [ConceptProbe.MetadataKey] = after.ToJson() };
            var written = place ? path : target!;
            if (!place && !parse.GetValue(force) && File.Exists(written)) throw new IOException($"'{written}' already exists (use --force to overwrite).");
            SpmFile.Save(written, new SpmAdapter(adapter.Config with { Extra = extra }, adapter.Membranes, adapter.StorageDType), overwrite: true, adapter.StorageDType);
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Path.GetFileName(written)}: gate '{after.Concept}' shut <= {before.Closed:0.###} -> {after.Closed:0.###}, open >= {before.Open:0.###} -> {after.Open:0.###}, strength {before.Strength:0.###} -> {after.Strength:0.###}"));
            return 0;
        });
        return cmd;
    }

    private static Command Fit(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = "Model folder (diffusers/optimum ONNX layout). Default: $SPM_MODEL, else models/tiny-shapes." };
        var spm = new Option<string[]>("--spm") { Description = "SPM file(s) to fit a gate for (repeat, or list several after one --spm); a bare name such as 'circle' means MODEL/spm/circle.safetensors.", AllowMultipleArgumentsPerToken = true, Required = true };
        var concepts = new Option<string[]>("--concepts") { Description = "The concept each --spm file erases, in order. Default: the first of each file's prompts.", AllowMultipleArgumentsPerToken = true };
        var judge = new Option<string>("--judge") { Description = "Who says whether an image shows the concept: tiny-shapes (the built-in world's evaluator) or onnx:PATH[:CLASS[:THRESHOLD[:softmax]]] (your image classifier; one --spm then).", DefaultValueFactory = _ => "tiny-shapes" };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Prompts to label, one per line (default with the tiny-shapes judge: generated re-phrasings of the world's captions)." };
        var prompts = new Option<int>("--prompts") { Description = "Prompts to generate when no --prompt-file is given.", DefaultValueFactory = _ => 1500 };
        var imagesPerPrompt = new Option<int>("--images-per-prompt") { Description = "Images drawn per prompt; a prompt's label is the share that shows the concept.", DefaultValueFactory = _ => 2 };
        var synonymShare = new Option<double>("--synonym-share") { Description = "With the tiny-shapes prompts: the share written with the world's synonyms (crimson, disc, banded...) for a model trained with --captions varied; 0 writes the prompts of earlier versions.", DefaultValueFactory = _ => 0 };
        synonymShare.Validators.Add(r => { var v = r.GetValue(synonymShare); if (!(v >= 0 && v <= 1)) r.AddError("--synonym-share must lie in [0, 1]."); });
        var data = new Option<string?>("--data") { Description = "Labelled-prompt cache (JSON lines): read when it exists (no images drawn), else written after labelling." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the prompts and image seeds.", DefaultValueFactory = _ => 0 };
        var outDir = new Option<string?>("--out-dir") { Description = "Write the SPM files with their gate into this folder (same file names)." };
        var inPlace = new Option<bool>("--in-place") { Description = "Add the gate to the given SPM files themselves (atomic rewrite; tensors unchanged)." };
        var l2 = new Option<double>("--l2") { Description = "Ridge penalty of the probe.", DefaultValueFactory = _ => ProbeFitOptions.Default.L2 };
        var hidden = new Option<int>("--hidden") { Description = "Hidden units of the per-token probe (0: linear).", DefaultValueFactory = _ => ProbeFitOptions.Default.HiddenUnits };
        var lookAhead = new Option<int>("--look-ahead") { Description = "Following positions the probe reads each position with: 0 = each alone; k = with the next k, so a later token can take back what a prefix suggested (in 'a ttriangle' the state of 'a t' looks like the start of any unknown shape word; the next token says triangle).", DefaultValueFactory = _ => 0 };
        var readMidWord = new Option<bool>("--read-mid-word") { Description = "Also read the positions inside a word (a token the next one continues, e.g. 't' of 'ttriangle'). By default the probe reads each word where it is complete, so a word's start cannot open the gate alone." };
        var readLast = new Option<int>("--read-last") { Description = "Positions the probe reads: 0 = every token; k = only the last k positions (the end token and padding, which have read the whole prompt in a causal text encoder, so a prefix such as 'a green t' of 'a green ttriangle' cannot open the gate alone).", DefaultValueFactory = _ => 0 };
        var strength = new Option<string>("--strength") { Description = "The membrane's multiplier when the gate is fully open: a number, or auto (default: the smallest of 1, 1.25, 1.5, 2 that leaves at most 2 % of the concept in images the base model draws it in, measured on up to 60 labelled prompts the model draws it for).", DefaultValueFactory = _ => "auto" };
        var closed = new Option<float>("--closed") { Description = "Probability (that the model draws the concept) at or below which the gate stays shut.", DefaultValueFactory = _ => ConceptProbe.DefaultClosed };
        var open = new Option<float>("--open") { Description = "Probability at or above which the gate is fully open (linear in between).", DefaultValueFactory = _ => ConceptProbe.DefaultOpen };
        var directionPrompts = new Option<int>("--direction-prompts") { Description = "Embedding-space augmentation: this many prompts the model does not draw the concept for are pushed along the concept's direction (the labelled prompts' mean conditioning drawn as the concept minus not), drawn and labelled, and join the probe's data, so the gate opens where such a push makes the model draw the concept (0: off).", DefaultValueFactory = _ => 0 };
        var directionStrengths = new Option<string>("--direction-strengths") { Description = "Multiples of the direction each augmented prompt is pushed by, comma-separated.", DefaultValueFactory = _ => string.Join(",", DirectionAugmentation.DefaultStrengths.Select(x => x.ToString(CultureInfo.InvariantCulture))) };
        var directionData = new Option<string?>("--direction-data") { Description = "Cache of the augmented samples (JSON lines, per concept): read when it holds the concept's, else written. Default with --data: DATA's name with .directions.jsonl." };
        var sampling = new SamplingOptions();
        var mine = new Option<int>("--mine") { Description = "Active labelling: fit a first gate, read it on many fresh candidate prompts, label this many of those it opens for (per concept), and fit again with them; corrects where the gate opens wrongly (a typo of another word, a near neighbour). 0 = off.", DefaultValueFactory = _ => 0 };
        var mineCandidates = new Option<int>("--mine-candidates") { Description = "Candidate prompts the first gate is read on (tiny-shapes: half the gate data's generator at another seed, half the evaluation's phrasings of each concept and of its near neighbours: typos, plurals, synonyms). Default: 20 x --mine." };
        var mineFrom = new Option<string?>("--mine-from") { Description = "Candidate prompts for --mine, one per line (required with --prompt-file; default with the tiny-shapes judge: generated)." };
        var mineData = new Option<string?>("--mine-data") { Description = "Cache of the mined, labelled prompts (JSON lines): read when it exists, else written. Default with --data: DATA's name with .mined.jsonl." };
        var force = new Option<bool>("--force") { Description = "Overwrite existing output files." };
        judge.Validators.Add(r =>
        {
            var v = r.GetValue(judge);
            if (v is not null && v != "tiny-shapes" && !v.StartsWith("onnx:", StringComparison.Ordinal))
                r.AddError($"--judge must be tiny-shapes or onnx:PATH[:CLASS[:THRESHOLD[:softmax]]], got '{v}'.");
        });
        var cmd = new Command("fit", "Fit each SPM's learned gate: draw base-model images for many prompts, let the judge label them, fit a per-token probe on the text encoder's states, and store it in the SPM file (metadata 'gate_probe').");
        foreach (var o in new Option[] { model, spm, concepts, judge, promptFile, prompts, imagesPerPrompt, synonymShare, data, seed, outDir, inPlace, l2, hidden, closed, open, strength, directionPrompts, directionStrengths, directionData, mine, mineCandidates, mineFrom, mineData, readLast, lookAhead, readMidWord, force }.Concat(sampling.All()))
            cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var modelFolder = DefaultModel.Resolve(parse.GetValue(model));
            Spm.Diffusion.Pipelines.Families.ModelFamilies.RefuseSdxl(modelFolder, "spm gate fit");
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], modelFolder, allowMultiplier: false).Select(a => a.Path).ToArray();
            var dir = parse.GetValue(outDir);
            bool place = parse.GetValue(inPlace);
            if ((dir is null) == !place) throw new SpmException("say where the gated SPM files go: --out-dir DIR, or --in-place.");
            bool overwrite = parse.GetValue(force);
            var outputs = files.Select(f => place ? f : Path.Combine(dir!, Path.GetFileName(f))).ToArray();
            if (!place)
                foreach (var o in outputs)
                    if (File.Exists(o) && !overwrite) throw new IOException($"'{o}' already exists (use --force to overwrite).");
            float shut = parse.GetValue(closed), full = parse.GetValue(open);
            if (!(shut >= 0 && shut < full && full <= 1)) throw new SpmException($"--closed and --open must satisfy 0 <= closed < open <= 1, got {shut.ToString(CultureInfo.InvariantCulture)} and {full.ToString(CultureInfo.InvariantCulture)}.");
            var strengthText = parse.GetValue(strength)!.Trim();
            float? fixedStrength = null;
            if (!strengthText.Equals("auto", StringComparison.OrdinalIgnoreCase))
            {
                if (!float.TryParse(strengthText, NumberStyles.Float, CultureInfo.InvariantCulture, out var sv) || !(sv > 0 && sv <= 16))
                    throw new SpmException($"--strength must be auto or a number in (0, 16], got '{strengthText}'.");
                fixedStrength = sv;
            }
            if (parse.GetValue(hidden) is < 0 or > 256) throw new SpmException($"--hidden must be 0..256, got {parse.GetValue(hidden)}.");
            if (parse.GetValue(lookAhead) is < 0 or > ConceptProbe.MaxLookAhead) throw new SpmException($"--look-ahead must be 0..{ConceptProbe.MaxLookAhead}, got {parse.GetValue(lookAhead)}.");
            if (parse.GetValue(readLast) is < 0 or > ConceptProbe.MaxReadLast) throw new SpmException($"--read-last must be 0..{ConceptProbe.MaxReadLast}, got {parse.GetValue(readLast)}.");
            int augment = parse.GetValue(directionPrompts);
            if (augment is < 0 or > 100_000) throw new SpmException($"--direction-prompts must be 0..100000, got {augment}.");
            var pushStrengths = new List<float>();
            foreach (var part in parse.GetValue(directionStrengths)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!float.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !(v > 0 && v <= 100))
                    throw new SpmException($"--direction-strengths must list numbers in (0, 100], got '{part}'.");
                pushStrengths.Add(v);
            }
            if (pushStrengths.Count == 0) throw new SpmException("--direction-strengths lists no strength.");
            int n = parse.GetValue(prompts), per = parse.GetValue(imagesPerPrompt);
            if (n is < 10 or > 1_000_000) throw new SpmException($"--prompts must be 10..1000000, got {n}.");
            if (per is < 1 or > 64) throw new SpmException($"--images-per-prompt must be 1..64, got {per}.");
            var names = parse.GetValue(concepts) ?? [];
            if (names.Length > 0 && names.Length != files.Length) throw new SpmException($"--concepts names {names.Length} concept(s) for {files.Length} --spm file(s).");
            var conceptNames = names.Length > 0 ? names : GateFitRequest.FirstPromptsOf(files);

            var judgeSpec = parse.GetValue(judge)!;
            var runtime = sampling.Runtime(parse);
            var judges = new List<IConceptJudge>();
            // One judge per distinct concept: two SPMs of one concept (an ablation and the real one) share labels.
            var distinctConcepts = conceptNames.Distinct(StringComparer.Ordinal).ToArray();
            if (judgeSpec == "tiny-shapes") judges.AddRange(distinctConcepts.Select(c => new ShapeConceptJudge(EvalConcept.Parse(c))));
            else
            {
                if (distinctConcepts.Length != 1) throw new SpmException("an onnx judge judges one concept: give SPMs of one concept.");
                var (path, options) = OnnxJudgeOptions.Parse(judgeSpec["onnx:".Length..]);
                judges.Add(new OnnxConceptJudge(path, options, runtime));
            }
            var file = parse.GetValue(promptFile);
            if (file is null && judgeSpec != "tiny-shapes") throw new SpmException("with an onnx judge, give the prompts to label with --prompt-file (the concept's phrasings and its neighbours, one per line).");

            var settings = sampling.Settings(parse, modelFolder);
            ulong s = parse.GetValue(seed);
            var warnings = new ActionProgress<string>(w => console.Error.WriteLine($"spm: warning: {w}"));
            using var job = GateFitJob.Open(new GateFitRequest
            {
                Model = modelFolder,
                Spms = files,
                Concepts = conceptNames,
                Judges = judges,
                ImagesPerPrompt = per,
                Seed = s,
                Fit = new ProbeFitOptions(L2: parse.GetValue(l2), HiddenUnits: parse.GetValue(hidden), Seed: s, ReadLast: parse.GetValue(readLast), LookAhead: parse.GetValue(lookAhead), SkipMidWord: !parse.GetValue(readMidWord)),
                Closed = shut,
                Open = full,
                Strength = fixedStrength,
                DirectionPrompts = augment,
                DirectionStrengths = pushStrengths,
                Sampling = settings,
                Runtime = runtime,
            }, warnings);

            var cache = parse.GetValue(data);
            IReadOnlyList<LabelledPrompt> labelled;
            if (cache is not null && File.Exists(cache))
            {
                labelled = GateFitting.Load(cache, job.JudgeNames);
                console.Error.WriteLine($"spm: {labelled.Count} labelled prompts read from {cache}");
            }
            else
            {
                var texts = file is not null
                    ? File.ReadAllLines(file).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray()
                    : ShapeGateData.Prompts(n, s, AttackPrimitives.VocabularyWords(Path.Combine(modelFolder, "tokenizer", "vocab.json")), parse.GetValue(synonymShare));
                if (texts.Count < 10) throw new SpmException($"'{file}' holds {texts.Count} prompts; a gate needs at least 10 (a few hundred to be useful).");
                console.Error.WriteLine($"spm: labelling {texts.Count} prompts x {per} images ({settings.Steps} steps, guidance {settings.GuidanceScale.ToString(CultureInfo.InvariantCulture)}) with {string.Join("; ", job.JudgeNames)}");
                labelled = await ProgressBars.RunAsync(console, "labelling", texts.Count * per, "image", bar =>
                    Task.Run(() => job.Label(texts, new ActionProgress<double>(d => bar.Report(new ProgressUpdate(d * texts.Count * per, texts.Count * per, null))), ct), ct));
                if (cache is not null)
                {
                    GateFitting.Save(cache, labelled, job.JudgeNames, overwrite: true);
                    console.Error.WriteLine($"spm: wrote {cache}");
                }
            }

            var directionCache = parse.GetValue(directionData) ?? (cache is null ? null : Path.ChangeExtension(cache, ".directions.jsonl"));
            var pushed = new Dictionary<string, IReadOnlyList<DirectionSample>>(StringComparer.Ordinal);
            if (augment > 0)
                foreach (var (c, i) in conceptNames.Select((c, i) => (c, i)))
                {
                    if (pushed.ContainsKey(c)) continue;
                    var cached = directionCache is not null && File.Exists(directionCache)
                        ? DirectionAugmentation.Load(directionCache).Where(d => d.Concept == c).ToList() : [];
                    // A cache of other strengths or another prompt count is another augmentation: label again (and replace it).
                    int expected = job.DirectionSampleCount(i, labelled);
                    bool same = cached.Count == expected && cached.Select(d => d.Strength).ToHashSet().SetEquals(pushStrengths);
                    if (cached.Count > 0 && !same)
                        console.Error.WriteLine($"spm: {directionCache} holds another augmentation of '{c}' ({cached.Count} samples at {string.Join(", ", cached.Select(d => d.Strength).Distinct().Order().Select(x => x.ToString(CultureInfo.InvariantCulture)))}): labelling again");
                    if (same)
                    {
                        console.Error.WriteLine($"spm: {cached.Count} pushed conditionings of '{c}' read from {directionCache}");
                        pushed[c] = cached;
                        continue;
                    }
                    int images = expected * per, spmIndex = i;
                    console.Error.WriteLine($"spm: pushing {expected / pushStrengths.Count} prompts along '{c}''s direction at {string.Join(", ", pushStrengths.Select(x => x.ToString(CultureInfo.InvariantCulture)))} ({images} images)");
                    var samples = await ProgressBars.RunAsync(console, $"pushing along '{c}'", images, "image", bar =>
                        Task.Run(() => job.LabelDirections(spmIndex, labelled, new ActionProgress<double>(d => bar.Report(new ProgressUpdate(d * images, images, null))), ct), ct));
                    pushed[c] = samples;
                    console.Error.WriteLine(FormattableString.Invariant($"spm: '{c}' drawn in {100 * samples.Average(d => d.Label):0.0} % of the pushed images ({string.Join(", ", samples.GroupBy(d => d.Strength).Select(g => $"{g.Key:0.##}: {100 * g.Average(d => d.Label):0} %"))})"));
                    if (directionCache is not null)
                    {
                        DirectionAugmentation.Save(directionCache, samples);
                        console.Error.WriteLine($"spm: wrote {directionCache}");
                    }
                }

            IReadOnlyList<LabelledPrompt>? mined = null;
            int mineCount = parse.GetValue(mine);
            if (mineCount is < 0 or > 100_000) throw new SpmException($"--mine must be 0..100000, got {mineCount}.");
            if (mineCount > 0)
            {
                var mineCache = parse.GetValue(mineData) ?? (cache is null ? null : Path.ChangeExtension(cache, ".mined.jsonl"));
                if (mineCache is not null && File.Exists(mineCache))
                {
                    mined = GateFitting.Load(mineCache, job.JudgeNames);
                    console.Error.WriteLine($"spm: {mined.Count} mined prompts read from {mineCache}");
                }
                else
                {
                    int candidateCount = parse.GetValue(mineCandidates) is int mc and > 0 ? mc : 20 * mineCount;
                    var from = parse.GetValue(mineFrom);
                    if (from is null && file is not null) throw new SpmException("--mine with --prompt-file needs candidate prompts: --mine-from FILE (one per line).");
                    IReadOnlyList<string> candidates = from is not null
                        ? File.ReadAllLines(from).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray()
                        : ShapeGateData.MiningCandidates(conceptNames.Distinct(StringComparer.Ordinal).ToList(), candidateCount, unchecked(s + 0x4D494E45UL),
                            AttackPrimitives.VocabularyWords(Path.Combine(modelFolder, "tokenizer", "vocab.json")), parse.GetValue(synonymShare));
                    var chosen = new List<string>();
                    var taken = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var c in conceptNames.Distinct(StringComparer.Ordinal))
                    {
                        int spmIndex = Array.IndexOf(conceptNames.ToArray(), c);
                        var (picked, opened) = await ProgressBars.RunAsync(console, $"reading '{c}''s first gate", candidates.Count, "prompt", bar =>
                            Task.Run(() => job.MinePrompts(spmIndex, labelled, pushed.GetValueOrDefault(c), candidates, mineCount, s,
                                new ActionProgress<double>(d => bar.Report(new ProgressUpdate(d * candidates.Count, candidates.Count, null))), ct), ct));
                        console.Error.WriteLine($"spm: '{c}''s first gate opens for {opened} of {candidates.Count} candidates; labelling {picked.Count} of them");
                        foreach (var p in picked) if (taken.Add(p)) chosen.Add(p);
                    }
                    int images = chosen.Count * per;
                    mined = await ProgressBars.RunAsync(console, "labelling mined prompts", images, "image", bar =>
                        Task.Run(() => job.Label(chosen, new ActionProgress<double>(d => bar.Report(new ProgressUpdate(d * images, images, null))), ct), ct));
                    if (mineCache is not null)
                    {
                        GateFitting.Save(mineCache, mined, job.JudgeNames, overwrite: true);
                        console.Error.WriteLine($"spm: wrote {mineCache}");
                    }
                }
                for (int j = 0; j < job.JudgeNames.Count; j++)
                    if (mined.Count > 0)
                        console.Error.WriteLine(FormattableString.Invariant($"spm: {job.JudgeNames[j]}: drawn in {100 * mined.Average(m => m.Labels[j]):0.0} % of the mined prompts' images"));
            }

            console.Out.WriteLine("spm | concept | prompts | positives | held-out AUC | held-out accuracy | mean p (held-out positives / negatives)");
            for (int i = 0; i < files.Length; i++)
            {
                int spmIndex = i;
                var directions = pushed.GetValueOrDefault(conceptNames[i]);
                int total = job.StrengthPromptsFor(i, labelled).Count * (GateFitRequest.StrengthCandidates.Count + 1);
                var outcome = total == 0
                    ? job.Fit(i, labelled, mined, null, warnings, directions, ct)
                    : await ProgressBars.RunAsync(console, $"strength of {Path.GetFileName(files[i])}", total, "image", bar =>
                        Task.Run(() => job.Fit(spmIndex, labelled, mined, new ActionProgress<double>(d => bar.Report(new ProgressUpdate(d * total, total, null))), warnings, directions, ct), ct));
                if (outcome.Strength is { } choice)
                    console.Error.WriteLine(FormattableString.Invariant(
                        $"spm: {Path.GetFileName(files[i])}: leak where the base drew '{conceptNames[i]}' ({choice.BaseDrawn} images): {string.Join(", ", choice.Leaks.Select(l => $"{l.Strength:0.##} -> {100 * l.Leak:0.0} %"))}; strength {choice.Strength:0.##}"));
                var h = outcome.Fit.HeldOut;
                console.Out.WriteLine(FormattableString.Invariant(
                    $"{Path.GetFileName(files[i])} | {conceptNames[i]} | {outcome.Prompts} | {outcome.Positives} | {h?.Auc:0.000} | {h?.Accuracy:0.000} | {h?.MeanOnPositives:0.00} / {h?.MeanOnNegatives:0.00}"));
                GateFitJob.Save(outcome, outputs[i], overwrite: place || overwrite);
                console.Error.WriteLine($"spm: wrote {outputs[i]}");
            }
            return 0;
        });
        return cmd;
    }

    private static Command Show(CliConsole console)
    {
        var model = new Option<string?>("--model") { Description = "Model folder. Default: $SPM_MODEL, else models/tiny-shapes." };
        var spm = new Option<string[]>("--spm") { Description = "SPM file(s).", AllowMultipleArgumentsPerToken = true, Required = true };
        var prompt = new Option<string[]>("--prompt") { Description = "Prompt(s) to read the gates of.", AllowMultipleArgumentsPerToken = true, Required = true };
        var tokens = new Option<bool>("--tokens")
        {
            Description = "Also print, for each SPM with a learned gate, what its probe reads at every position (token and probability; " +
                          "the position that dominates the pooled read is marked *): which word opened the gate.",
        };
        var cmd = new Command("show", "Print each SPM's gate for prompts under every way of reading it (auto, learned, empty, none).");
        cmd.Options.Add(model);
        cmd.Options.Add(spm);
        cmd.Options.Add(prompt);
        cmd.Options.Add(tokens);
        cmd.SetAction((parse, ct) =>
        {
            var modelFolder = DefaultModel.Resolve(parse.GetValue(model));
            var files = SpmFileArgument.ParseAll(parse.GetValue(spm) ?? [], modelFolder, allowMultiplier: false).Select(a => a.Path).ToArray();
            var loaded = LoadedSpms.Load(modelFolder, files);
            using var pipeline = StableDiffusionPipeline.Load(modelFolder, new PipelineOptions { UNetSource = loaded.UNetSource });
            var generator = new EvalImageGenerator(pipeline, loaded);
            var modes = new[] { GateCalibration.Auto, GateCalibration.Learned, GateCalibration.EmptyPrompt, GateCalibration.None };
            foreach (var p in parse.GetValue(prompt) ?? [])
            {
                ct.ThrowIfCancellationRequested();
                console.Out.WriteLine($"\"{p}\"");
                foreach (var mode in modes)
                {
                    if (mode == GateCalibration.Learned && loaded.Layout.Sets.Any(s => s.GateProbe is null)) continue;
                    var gates = generator.GatesFor(p, Enumerable.Repeat(new GateSettings(Calibration: mode), files.Length).ToList());
                    console.Out.WriteLine($"  {GateCalibrations.NameOf(mode),-8} {string.Join("; ", gates)}");
                }
                if (parse.GetValue(tokens)) WriteProbeReadings(console, pipeline, loaded, p);
            }
            return Task.FromResult(0);
        });
        return cmd;
    }

    /// <summary>
    /// One line per learned probe: each read position's token and the probe's probability there. The pooled read is a soft
    /// maximum, so the largest position decides; it is marked. The end token and the padding are summed up as one entry
    /// (their largest value), since 60-odd padding positions would drown the words.
    /// </summary>
    private static void WriteProbeReadings(CliConsole console, StableDiffusionPipeline pipeline, LoadedSpms loaded, string prompt)
    {
        var (ids, embedding) = pipeline.EncodePrompt(prompt);
        var tokenizer = pipeline.Tokenizer;
        var midWord = tokenizer.MidWordMask(ids);
        foreach (var set in loaded.Layout.Sets)
        {
            if (set.GateProbe is not { } probe) continue;
            if (embedding.Data.Length % probe.Width != 0 || embedding.Data.Length / probe.Width != ids.Length)
            {
                console.Out.WriteLine($"  tokens   {set.Name}: the probe reads {probe.Width}-wide states; this encoder's are not (no per-token view)");
                continue;
            }
            var logits = probe.TokenLogits(embedding.Data, midWord);
            int first = probe.FirstPosition(ids.Length), top = 0;
            for (int j = 1; j < logits.Length; j++) if (logits[j] > logits[top]) top = j;
            int end = Array.IndexOf(ids, tokenizer.EosId, 1);
            if (end < 0) end = ids.Length - 1;
            var parts = new List<string>();
            float tailMax = float.NegativeInfinity;
            int tailTop = -1;
            for (int j = 0; j < logits.Length; j++)
            {
                int position = first + j;
                if (position >= end)
                {
                    if (logits[j] > tailMax) (tailMax, tailTop) = (logits[j], j);
                    continue;
                }
                // A position the probe leaves out (inside a word) shows as "-".
                parts.Add(float.IsNegativeInfinity(logits[j])
                    ? $"{tokenizer.Decode([ids[position]])} -"
                    : FormattableString.Invariant($"{tokenizer.Decode([ids[position]])} {ConceptProbe.Sigmoid(logits[j]):0.00}{(j == top ? "*" : "")}"));
            }
            if (tailTop >= 0)
                parts.Add(FormattableString.Invariant($"<end+pad> {ConceptProbe.Sigmoid(tailMax):0.00}{(tailTop == top ? "*" : "")}"));
            console.Out.WriteLine(FormattableString.Invariant(
                $"  tokens   {set.Name} (p_draw {probe.Probability(embedding.Data, midWord):0.00}): {string.Join(" | ", parts)}"));
        }
    }
}
