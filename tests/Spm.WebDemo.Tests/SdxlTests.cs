using System.Net.Http.Json;
using System.Text.Json;
using Spm.Samples.WebDemo;
using Spm.Tests.Common;

namespace Spm.WebDemo.Tests;

/// <summary>
/// The WebDemo on an SDXL pipeline: the tiny SDXL pipeline with the PyTorch-exported UNet and the PyTorch reference
/// case's membranes (120 layers, official SDXL keys). Gates come from the SDXL conditioning, and a generation with
/// the SPM switched off is the base image while switching it on changes the image.
/// </summary>
[TestFixture]
public class SdxlTests
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    [Test]
    public async Task OnSdxl_GatesAreServed_AndTheSpmChangesTheImageOnlyWhenEnabled()
    {
        var spm = TinySdxlTorch.FixtureFile("membranes", "spm.safetensors");
        var concept = Spm.Core.Membranes.SpmFile.Load(spm).Config.Prompts[0]; // the gate opens on the SPM's own concept
        await using var app = WebDemoApp.Build(new WebDemoOptions(TinySdxlTorch.Folder, [spm], Port: 0, Steps: 2, Size: 64, Quiet: true));
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = WebDemoApp.Address(app) };

        var info = (await http.GetFromJsonAsync<InfoAnswer>("api/info", Json))!;
        Assert.That(info.Spms, Has.Count.EqualTo(1));

        var gates = (await (await http.PostAsJsonAsync("api/gates", new { prompt = concept, enabled = new[] { true } }))
            .Content.ReadFromJsonAsync<GateView[]>(Json))!;
        Assert.That(gates, Has.Length.EqualTo(1));
        Assert.That(float.IsFinite(gates[0].Gate), Is.True);

        async Task<GenerateAnswer> Generate(bool enabled)
        {
            var response = await http.PostAsJsonAsync("api/generate", new { prompt = concept, enabled = new[] { enabled }, seed = 3 });
            Assert.That(response.IsSuccessStatusCode, Is.True, await response.Content.ReadAsStringAsync());
            return (await response.Content.ReadFromJsonAsync<GenerateAnswer>(Json))!;
        }
        var off = await Generate(false);
        Assert.That(off.Erased, Is.EqualTo(off.Base), "the SPM switched off leaves the base image");
        var on = await Generate(true);
        Assert.That(on.Base, Is.EqualTo(off.Base), "the same seed gives the same base image");
        Assert.That((on.Width, on.Height), Is.EqualTo((64, 64)));
        Assert.That(on.Gates[0].Applied, Is.GreaterThan(0f), "the gate opens on the SPM's own concept");
        Assert.That(on.Erased, Is.Not.EqualTo(on.Base), "an applied SPM changes the image");
        await app.StopAsync();
    }
}
