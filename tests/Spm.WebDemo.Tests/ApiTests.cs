using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Spm.Core;
using Spm.Samples.WebDemo;
using Spm.Tests.Common;

namespace Spm.WebDemo.Tests;

/// <summary>The WebDemo's JSON API over real HTTP on 127.0.0.1 (no browser).</summary>
public class ApiTests
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private HttpClient _http = null!;

    [SetUp]
    public void SetUp() => _http = new HttpClient { BaseAddress = DemoServer.Address, Timeout = TimeSpan.FromSeconds(60) };

    [TearDown]
    public void TearDown() => _http.Dispose();

    [Test]
    public async Task Info_ListsTheLoadedSpms_AndTheAppListensOnLoopbackOnly()
    {
        Assert.That(DemoServer.Address.Host, Is.EqualTo("127.0.0.1"));
        var info = await _http.GetFromJsonAsync<InfoAnswer>("api/info", Json);
        Assert.That(info!.Model, Is.EqualTo("tiny-sd1"));
        Assert.That(info.Steps, Is.EqualTo(4));
        Assert.That(info.Size, Is.EqualTo(64));
        Assert.That(info.SizeMultiple, Is.EqualTo(16), "VAE factor 8 x 2 for the fixture UNet's one down-sampling level");
        // Both fixture files are called spm.safetensors: the names carry their folder to tell them apart.
        Assert.That(info.Spms.Select(s => (s.Index, s.Name, s.Rank, s.Layers)), Is.EqualTo(new[]
        {
            (0, "all-layers/spm.safetensors", 1, 72),
            (1, "attn2-rank4/spm.safetensors", 4, 24),
        }));
        Assert.That(info.Spms.Select(s => string.Join(",", s.Concepts)), Is.EqualTo(new[] { "reference concept", "reference concept" }));
    }

    [Test]
    public async Task Page_IsServedWithItsScriptAndAStrictContentSecurityPolicy()
    {
        var page = await _http.GetAsync("/");
        Assert.That(page.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(page.Content.Headers.ContentType!.MediaType, Is.EqualTo("text/html"));
        Assert.That(await page.Content.ReadAsStringAsync(), Does.Contain("id=\"generate\"").And.Contain("/app.js"));
        Assert.That(page.Headers.GetValues("Content-Security-Policy").Single(), Does.StartWith("default-src 'self'"));
        var script = await _http.GetStringAsync("/app.js");
        Assert.That(script, Does.Contain("/api/generate"));
    }

    [Test]
    public async Task Gates_FollowTheFlags_DisabledSpmsApplyZero()
    {
        var response = await _http.PostAsJsonAsync("api/gates", new { prompt = "the reference concept", enabled = new[] { false, true } });
        var gates = await response.Content.ReadFromJsonAsync<GateView[]>(Json);
        Assert.That(gates!.Select(g => (g.Enabled, g.Gamma, g.Gate, g.Applied)), Is.EqualTo(new[]
        {
            (false, 1f, 1f, 0f),
            (true, 1f, 1f, 1f),
        }));
    }

    [Test]
    public async Task Generate_WithEverySpmOff_GivesTheBaseImageTwice_AndWithOneOn_ADifferentImage()
    {
        var off = await Generate(new { prompt = "the reference concept", enabled = new[] { false, false }, seed = 5 });
        Assert.That(off.Erased, Is.EqualTo(off.Base));
        var on = await Generate(new { prompt = "the reference concept", enabled = new[] { false, true }, seed = 5 });
        Assert.That(on.Base, Is.EqualTo(off.Base), "the same seed gives the same base image");
        var b = DemoServer.DecodeDataUrl(on.Base).Rgb;
        var e = DemoServer.DecodeDataUrl(on.Erased).Rgb;
        Assert.That(e, Is.Not.EqualTo(b));
        Assert.That(DemoServer.Diff(b, e).Changed, Is.GreaterThan(0.05));
        Assert.That(on.Parameters, Does.EndWith("SPM: spm.safetensors x0 (fixed), spm.safetensors gate 1 (gamma 1, empty-calibrated)"));
        Assert.That((on.Width, on.Height), Is.EqualTo((64, 64)));
    }

    [Test]
    public async Task ConcurrentRequests_ReturnExactlyWhatTheSameRequestsReturnOneByOne()
    {
        var requests = new object[]
        {
            new { prompt = "the reference concept", enabled = new[] { true, false }, seed = 11 },
            new { prompt = "a cat", enabled = new[] { true, true }, seed = 12 },
            new { prompt = "a red car", enabled = new[] { false, true }, seed = 13 },
            new { prompt = "the reference concept", enabled = new[] { true, true }, seed = 14 },
        };
        var together = await Task.WhenAll(requests.Select(Generate));
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = await Generate(requests[i]);
            Assert.That((together[i].Base, together[i].Erased), Is.EqualTo((alone.Base, alone.Erased)), $"request {i}");
        }
    }

    [TestCase("{\"prompt\":\"x\",\"enabled\":[true]}", "enabled", "expected 2 SPM flags, got 1.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,\"circle\"]}", "enabled",
        "must be an array of booleans in /api/info order, or an array of SPM names (not a mix, nor other values).")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":true}", "enabled",
        "must be an array of booleans in /api/info order, or an array of SPM names, got a boolean.")]
    [TestCase("{\"prompt\":\"x\"}", "enabled",
        "is required: 2 booleans in /api/info order, or SPM names from 'all-layers/spm.safetensors', 'attn2-rank4/spm.safetensors'.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[\"circle\"]}", "enabled",
        "no SPM is called 'circle'; the loaded SPMs are 'all-layers/spm.safetensors', 'attn2-rank4/spm.safetensors'.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[\"all-layers/spm\",\"all-layers/spm.safetensors\"]}", "enabled",
        "'all-layers/spm.safetensors' is named twice.")]
    [TestCase("{\"enabled\":[true,true]}", "prompt", "is required (a string; \"\" for none).")]
    [TestCase("{\"prompt\":7,\"enabled\":[true,true]}", "prompt", "must be a string, got a number.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":0}", "steps", "must be 1..100, got 0.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":101}", "steps", "must be 1..100, got 101.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":\"abc\"}", "steps", "must be a whole number 1..100, got \"abc\".")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":2.5}", "steps", "must be a whole number 1..100, got 2.5.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"size\":2048}", "size", "must be 1..1024, got 2048.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"seed\":-1}", "seed", "must be a whole number from 0 to 18446744073709551615, got -1.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"guidance\":\"high\"}", "guidance", "must be a finite number, got \"high\".")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"negativePrompt\":[]}", "negativePrompt", "must be a string, got an array.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"enable\":[true,true]}", "enable",
        "is not a field of this request; it takes prompt, enabled, seed, steps, size, negativePrompt, guidance.")]
    [TestCase("{\"prompt\":\"x\",\"Prompt\":\"y\",\"enabled\":[true,true]}", "prompt", "is given more than once.")]
    [TestCase("[1,2]", "body", "must be a JSON object, got an array.")]
    [TestCase("{\"prompt\": ", "body", "the request body is not valid JSON (line 1, byte 12).")]
    public async Task BadGenerateRequests_Are400ProblemsNamingTheField(string body, string field, string message)
    {
        var problem = await PostForProblem("api/generate", body, HttpStatusCode.BadRequest);
        Assert.That(Errors(problem), Is.EqualTo(new Dictionary<string, string[]> { [field] = [message] }));
        Assert.That(problem.GetProperty("detail").GetString(), Is.EqualTo($"{field}: {message}"));
        Assert.That(problem.GetProperty("title").GetString(), Is.EqualTo("The request is invalid."));
        Assert.That(problem.GetProperty("status").GetInt32(), Is.EqualTo(400));
        Assert.That(DemoServer.Log.Lines, Has.Some.EqualTo((WebDemoApp.LogCategory, LogLevel.Warning,
            $"POST /api/generate refused (400): {field}: {message}")));
    }

    [Test]
    public async Task ASizeTheModelCannotDraw_IsAProblemNamingSize()
    {
        // Within 1..1024, so the body reader passes it; the model's own constraint (VAE factor 8 x 2 for the fixture UNet's
        // one down-sampling level) refuses it before any model runs. /api/info tells the page that multiple.
        var problem = await PostForProblem("api/generate", "{\"prompt\":\"x\",\"enabled\":[true,true],\"size\":60}", HttpStatusCode.BadRequest);
        var errors = Errors(problem);
        Assert.That(errors.Keys, Is.EqualTo(new[] { "size" }));
        Assert.That(errors["size"].Single(), Is.EqualTo(
            "must be a multiple of 16, got 60 (model 'tiny-sd1' needs multiples of 16: the VAE scales by 8 and the UNet halves the latent 1 time(s)); try 48 or 64."));
    }

    [Test]
    public async Task EveryMistakeOfABody_IsReportedAtOnce()
    {
        var problem = await PostForProblem("api/generate", "{\"enabled\":[true],\"steps\":0,\"seed\":1.5}", HttpStatusCode.BadRequest);
        Assert.That(Errors(problem), Is.EqualTo(new Dictionary<string, string[]>
        {
            ["prompt"] = ["is required (a string; \"\" for none)."],
            ["enabled"] = ["expected 2 SPM flags, got 1."],
            ["seed"] = ["must be a whole number from 0 to 18446744073709551615, got 1.5."],
            ["steps"] = ["must be 1..100, got 0."],
        }));
        // A misspelt field is named, not ignored; the field it was meant to be is then missing.
        var typo = await PostForProblem("api/gates", "{\"prompt\":\"x\",\"enable\":[true,true]}", HttpStatusCode.BadRequest);
        Assert.That(Errors(typo), Is.EqualTo(new Dictionary<string, string[]>
        {
            ["enable"] = ["is not a field of this request; it takes prompt, enabled."],
            ["enabled"] = ["is required: 2 booleans in /api/info order, or SPM names from 'all-layers/spm.safetensors', 'attn2-rank4/spm.safetensors'."],
        }));
    }

    [TestCase("api/gates")]
    [TestCase("api/generate")]
    public async Task AnEmptyBody_Is400WithAProblem_AndALogLine(string path)
    {
        const string message = "the request body is empty; send a JSON object such as {\"prompt\": \"a red circle\", \"enabled\": [true, false]}.";
        foreach (var content in new HttpContent[] { new StringContent("", System.Text.Encoding.UTF8, "application/json"), new ByteArrayContent([]) })
        {
            using (content)
            {
                var response = await _http.PostAsync(path, content);
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
                Assert.That(response.Content.Headers.ContentType!.MediaType, Is.EqualTo("application/problem+json"));
                var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
                Assert.That(Errors(problem), Is.EqualTo(new Dictionary<string, string[]> { ["body"] = [message] }));
            }
        }
        Assert.That(DemoServer.Log.Lines, Has.Some.EqualTo((WebDemoApp.LogCategory, LogLevel.Warning, $"POST /{path} refused (400): body: {message}")));
    }

    [Test]
    public async Task ABodyNotSentAsJson_Is415WithAProblem()
    {
        using var content = new StringContent("{\"prompt\":\"x\",\"enabled\":[true,true]}", System.Text.Encoding.UTF8, "text/plain");
        var response = await _http.PostAsync("api/gates", content);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
        Assert.That(response.Content.Headers.ContentType!.MediaType, Is.EqualTo("application/problem+json"));
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(Errors(problem), Is.EqualTo(new Dictionary<string, string[]>
        {
            ["body"] = ["the request body must be sent as application/json, got 'text/plain; charset=utf-8'."],
        }));
        Assert.That(DemoServer.Log.Lines, Has.Some.EqualTo((WebDemoApp.LogCategory, LogLevel.Warning,
            "POST /api/gates refused (415): body: the request body must be sent as application/json, got 'text/plain; charset=utf-8'.")));

        // No content type at all (a cross-origin page may send that without a CORS preflight): refused the same way.
        using var untyped = new ByteArrayContent("{\"prompt\":\"x\",\"enabled\":[true,true]}"u8.ToArray());
        var bare = await _http.PostAsync("api/gates", untyped);
        Assert.That(bare.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
        Assert.That(Errors(await bare.Content.ReadFromJsonAsync<JsonElement>()), Is.EqualTo(new Dictionary<string, string[]>
        {
            ["body"] = ["the request body must be sent as application/json, got 'no content type'."],
        }));
    }

    [Test]
    public async Task Gates_TakeSpmNames_WithOrWithoutTheExtension_AsWellAsFlags()
    {
        var byFlags = await PostJson<GateView[]>("api/gates", new { prompt = "a cat", enabled = new[] { false, true } });
        var byName = await PostJson<GateView[]>("api/gates", new { prompt = "a cat", enabled = new[] { "attn2-rank4/spm.safetensors" } });
        var byStem = await PostJson<GateView[]>("api/gates", new { prompt = "a cat", enabled = new[] { "attn2-rank4/spm" } });
        Assert.That(byFlags.Select(g => (g.Enabled, g.Applied)).First(), Is.EqualTo((false, 0f)));
        Assert.That(byName, Is.EqualTo(byFlags));
        Assert.That(byStem, Is.EqualTo(byFlags));
        var none = await PostJson<GateView[]>("api/gates", new { prompt = "a cat", enabled = Array.Empty<string>() });
        Assert.That(none.Select(g => (g.Enabled, g.Applied)), Is.EqualTo(new[] { (false, 0f), (false, 0f) }), "[] switches every SPM off");
    }

    [Test]
    public async Task Generate_TakesSpmNames_AndGivesWhatTheSameFlagsGive()
    {
        var byFlags = await Generate(new { prompt = "the reference concept", enabled = new[] { false, true }, seed = 5 });
        var byName = await Generate(new { prompt = "the reference concept", enabled = new[] { "attn2-rank4/spm.safetensors" }, seed = 5 });
        Assert.That((byName.Base, byName.Erased, byName.Parameters), Is.EqualTo((byFlags.Base, byFlags.Erased, byFlags.Parameters)));
        Assert.That(byName.Gates.Select(g => g.Enabled), Is.EqualTo(new[] { false, true }));
    }

    [Test]
    public async Task OpenApiDocument_DescribesTheThreeEndpoints_TheirBodies_AndTheirProblems()
    {
        var response = await _http.GetAsync(WebDemoApp.OpenApiPath.TrimStart('/'));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var doc = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(doc.GetProperty("openapi").GetString(), Does.StartWith("3."));
        Assert.That(doc.GetProperty("info").GetProperty("title").GetString(), Is.EqualTo("Spm WebDemo API"));
        var paths = doc.GetProperty("paths");
        Assert.That(paths.EnumerateObject().Select(p => p.Name), Is.EquivalentTo(new[] { "/api/info", "/api/gates", "/api/generate" }),
            "the page's files are not part of the API");
        Assert.That(paths.GetProperty("/api/info").GetProperty("get").GetProperty("responses").TryGetProperty("200", out _));

        var schemas = doc.GetProperty("components").GetProperty("schemas");
        foreach (var (path, schemaName, fields) in new[]
        {
            ("/api/gates", "GatesBody", new[] { "prompt", "enabled" }),
            ("/api/generate", "GenerateBody", new[] { "prompt", "enabled", "seed", "steps", "size", "negativePrompt", "guidance" }),
        })
        {
            var post = paths.GetProperty(path).GetProperty("post");
            var body = post.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("schema");
            Assert.That(body.GetProperty("$ref").GetString(), Is.EqualTo($"#/components/schemas/{schemaName}"), path);
            Assert.That(schemas.GetProperty(schemaName).GetProperty("properties").EnumerateObject().Select(p => p.Name), Is.EqualTo(fields), path);
            var responses = post.GetProperty("responses");
            Assert.That(responses.GetProperty("400").GetProperty("content").TryGetProperty("application/problem+json", out _), path);
            Assert.That(responses.GetProperty("415").GetProperty("content").TryGetProperty("application/problem+json", out _), path);
            Assert.That(responses.TryGetProperty("200", out _), path);
        }
        // 'enabled' is one of two arrays: booleans in /api/info order, or SPM names.
        var selection = schemas.GetProperty("SpmSelection");
        Assert.That(selection.GetProperty("oneOf").EnumerateArray().Select(s => s.GetProperty("items").GetProperty("type").GetString()),
            Is.EqualTo(new[] { "boolean", "string" }));
        Assert.That(selection.TryGetProperty("properties", out var props) ? props.EnumerateObject().Count() : 0, Is.Zero);
    }

    [Test]
    public void Options_DefaultToTheModelsSpmFolder_SortedByName()
    {
        var model = TestPaths.NewTempDir("spm-webdemo-model");
        try
        {
            Directory.CreateDirectory(Path.Combine(model, "spm"));
            foreach (var f in new[] { "red.safetensors", "circle.safetensors", "notes.txt" })
                File.WriteAllText(Path.Combine(model, "spm", f), "");
            var o = WebDemoOptions.Parse(["--model", model, "--port", "0", "--steps", "8"]);
            Assert.That(o.SpmFiles.Select(Path.GetFileName), Is.EqualTo(new[] { "circle.safetensors", "red.safetensors" }));
            Assert.That((o.ModelFolder, o.Port, o.Steps, o.Size), Is.EqualTo((model, 0, 8, (int?)null)));
            var explicitSpm = WebDemoOptions.Parse(["--model", model, "--spm", "a.safetensors"]);
            Assert.That(explicitSpm.SpmFiles, Is.EqualTo(new[] { "a.safetensors" }));
            Assert.That(explicitSpm.Port, Is.EqualTo(WebDemoOptions.DefaultPort));
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    [TestCase(new[] { "--port", "70000" }, "--port must be an integer in 0..65535, got '70000'.")]
    [TestCase(new[] { "--steps" }, "--steps needs a value.")]
    [TestCase(new[] { "--bogus" }, "unknown argument '--bogus'.")]
    public void Options_BadArguments_AreSpmExceptions(string[] args, string message)
    {
        var ex = Assert.Throws<SpmException>(() => WebDemoOptions.Parse(["--model", "m", .. args]));
        Assert.That(ex!.Message, Does.StartWith(message));
    }

    [Test]
    public void Startup_WithABrokenSpmFile_FailsNamingTheFile()
    {
        var dir = TestPaths.NewTempDir("spm-webdemo-bad");
        try
        {
            var bad = Path.Combine(dir, "broken.safetensors");
            File.WriteAllBytes(bad, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, (byte)'{']);
            var ex = Assert.Throws<SpmFormatException>(() => WebDemoApp.Build(new WebDemoOptions(TestPaths.TinySd1, [bad], Port: 0, Quiet: true)));
            Assert.That(ex!.Message, Does.Contain("broken.safetensors"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public async Task WithoutSpms_TheAppServesThePlainModel_AndBothImagesAreTheBaseImage()
    {
        await using var app = WebDemoApp.Build(new WebDemoOptions(TestPaths.TinySd1, [], Port: 0, Steps: 2, Size: 64, Quiet: true));
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = WebDemoApp.Address(app) };
        var info = await http.GetFromJsonAsync<InfoAnswer>("api/info", Json);
        Assert.That(info!.Spms, Is.Empty);
        var gates = await (await http.PostAsJsonAsync("api/gates", new { prompt = "a cat", enabled = Array.Empty<bool>() })).Content.ReadFromJsonAsync<GateView[]>(Json);
        Assert.That(gates, Is.Empty);
        var response = await http.PostAsJsonAsync("api/generate", new { prompt = "the reference concept", enabled = Array.Empty<bool>(), seed = 5, steps = 4 });
        var answer = (await response.Content.ReadFromJsonAsync<GenerateAnswer>(Json))!;
        Assert.That(answer.Erased, Is.EqualTo(answer.Base));
        // The plain model draws what the injected model draws with every gate at 0 (the shared app's base image).
        var shared = await Generate(new { prompt = "the reference concept", enabled = new[] { true, true }, seed = 5 });
        Assert.That(DemoServer.DecodeDataUrl(answer.Base).Rgb, Is.EqualTo(DemoServer.DecodeDataUrl(shared.Base).Rgb));
        Assert.That(answer.Parameters, Does.Not.Contain("SPM"));
        await app.StopAsync();
    }

    [Test]
    public async Task TooLongPrompt_Is400NamingThePrompt()
    {
        var body = JsonSerializer.Serialize(new { prompt = new string('a', DemoEngine.MaxPromptLength + 1), enabled = new[] { true, true } });
        var problem = await PostForProblem("api/gates", body, HttpStatusCode.BadRequest);
        Assert.That(Errors(problem), Is.EqualTo(new Dictionary<string, string[]>
        {
            ["prompt"] = [$"must be at most {DemoEngine.MaxPromptLength} characters, got {DemoEngine.MaxPromptLength + 1}."],
        }));
    }

    private async Task<JsonElement> PostForProblem(string path, string body, HttpStatusCode status)
    {
        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        var response = await _http.PostAsync(path, content);
        Assert.That(response.StatusCode, Is.EqualTo(status), await response.Content.ReadAsStringAsync());
        Assert.That(response.Content.Headers.ContentType!.MediaType, Is.EqualTo("application/problem+json"));
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private static Dictionary<string, string[]> Errors(JsonElement problem) =>
        problem.GetProperty("errors").EnumerateObject().ToDictionary(
            p => p.Name, p => p.Value.EnumerateArray().Select(m => m.GetString()!).ToArray());

    private async Task<T> PostJson<T>(string path, object body)
    {
        var response = await _http.PostAsJsonAsync(path, body);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<T>(Json))!;
    }

    private async Task<GenerateAnswer> Generate(object body)
    {
        var response = await _http.PostAsJsonAsync("api/generate", body);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<GenerateAnswer>(Json))!;
    }
}
