using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
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
        Assert.That(on.Parameters, Does.EndWith("SPM: spm.safetensors x0 (fixed), spm.safetensors gate 1 (gamma 1)"));
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

    [TestCase("{\"prompt\":\"x\",\"enabled\":[true]}", "expected 2 SPM flags, got 1.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":0}", "steps must be 1..100, got 0.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"steps\":101}", "steps must be 1..100, got 101.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"size\":2048}", "size must be 1..1024, got 2048.")]
    [TestCase("{\"prompt\":\"x\",\"enabled\":[true,true],\"size\":60}", "must be a multiple of")]
    public async Task BadGenerateRequests_Are400WithTheCause(string body, string message)
    {
        using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        var response = await _http.PostAsync("api/generate", content);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var error = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(error.GetProperty("error").GetString(), Does.Contain(message));
    }

    [Test]
    public async Task TooLongPromptAndMalformedJson_Are400()
    {
        var longPrompt = await _http.PostAsJsonAsync("api/gates", new { prompt = new string('a', DemoEngine.MaxPromptLength + 1), enabled = new[] { true, true } });
        Assert.That(longPrompt.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await longPrompt.Content.ReadAsStringAsync(), Does.Contain($"at most {DemoEngine.MaxPromptLength} characters"));
        using var broken = new StringContent("{\"prompt\": ", System.Text.Encoding.UTF8, "application/json");
        Assert.That((await _http.PostAsync("api/generate", broken)).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
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

    private async Task<GenerateAnswer> Generate(object body)
    {
        var response = await _http.PostAsJsonAsync("api/generate", body);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<GenerateAnswer>(Json))!;
    }
}
