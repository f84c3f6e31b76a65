using System.Globalization;
using Microsoft.Playwright;
using Spm.Core.Gating;
using Spm.Diffusion.Pipelines;

namespace Spm.WebDemo.Tests;

/// <summary>
/// Drives the WebDemo page in Debian's headless Chromium through Playwright (the Playwright driver ships in its NuGet
/// package; its own browser download is never used). The test command (<c>scripts/test.sh</c>, which CI runs) installs
/// Chromium first when it is missing (<c>scripts/install-chromium.sh</c>); without it this test fails rather than skips.
/// </summary>
public class BrowserTests
{
    private const string DefaultChromium = "/usr/bin/chromium";

    /// <summary>Chromium's path: <c>$SPM_CHROMIUM</c>, else Debian's.</summary>
    private static string ChromiumPath()
    {
        var path = Environment.GetEnvironmentVariable("SPM_CHROMIUM");
        path = string.IsNullOrWhiteSpace(path) ? DefaultChromium : path;
        if (!File.Exists(path))
            Assert.Fail($"Chromium not found at {path}: run scripts/install-chromium.sh (apt-get install chromium) or set SPM_CHROMIUM.");
        return path;
    }

    [Test]
    public async Task Page_ShowsGates_TogglesAnSpm_AndGeneratesBaseAndErasedImagesThatDiffer()
    {
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath(),
            Headless = true,
            Timeout = 60_000,
            // This machine's network is closed: keep Chromium from calling home at start (refused connections, delays).
            Args = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"],
        });
        var page = await browser.NewPageAsync();
        page.SetDefaultTimeout(30_000);
        var consoleErrors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text); };

        await page.GotoAsync(DemoServer.Address.ToString());
        await page.WaitForSelectorAsync("body[data-ready='1']");
        Assert.That(await page.Locator("#gates tbody tr").CountAsync(), Is.EqualTo(2));
        Assert.That(await page.InnerTextAsync("#model"), Does.Contain("tiny-sd1").And.Contain("2 SPM(s)"));

        // 1. A prompt unlike the concept: the page shows the gates the library computes for it (both SPMs on).
        const string other = "a cat on a sofa";
        await page.FillAsync("#prompt", other);
        await page.WaitForSelectorAsync($"#gates[data-prompt='{other}'][data-enabled='11']");
        var expected = DemoServer.Engine.Loaded!.CreateConditioner(DemoServer.Engine.Pipeline, [GateSettings.Default, GateSettings.Default])
            .GatesFor(other);
        for (int i = 0; i < 2; i++)
        {
            var row = page.Locator($"#gates tr[data-index='{i}']");
            Assert.That(await row.Locator(".gamma").InnerTextAsync(), Is.EqualTo(expected[i].Gamma.ToString("0.000", CultureInfo.InvariantCulture)));
            Assert.That(await row.Locator(".gate").InnerTextAsync(), Is.EqualTo(expected[i].Multiplier.ToString("0.000", CultureInfo.InvariantCulture)));
        }
        Assert.That(expected[0].Multiplier, Is.LessThan(0.999f), "the test wants a prompt whose gate is not fully open");

        // 2. The concept's prompt opens the gates fully (every concept token present); switch the first SPM off.
        const string prompt = "a photo of the reference concept";
        await page.FillAsync("#prompt", prompt);
        await page.UncheckAsync("#spm-0");
        await page.WaitForSelectorAsync($"#gates[data-prompt='{prompt}'][data-enabled='01']");
        Assert.That(await page.Locator("#gates tr[data-index='1'] .applied").InnerTextAsync(), Is.EqualTo("1.000"));
        Assert.That(await page.Locator("#gates tr[data-index='0'] .gate").InnerTextAsync(), Is.EqualTo("1.000"));
        Assert.That(await page.Locator("#gates tr[data-index='0'] .applied").InnerTextAsync(), Is.EqualTo("0.000"));
        Assert.That(await page.GetAttributeAsync("#gates tr[data-index='0']", "class"), Does.Contain("off"));
        Assert.That(await page.GetAttributeAsync("#gates tr[data-index='1']", "class") ?? "", Does.Not.Contain("off"));

        // 3. Generate (small and quick) and wait for both images.
        await page.FillAsync("#seed", "3");
        await page.FillAsync("#steps", "4");
        await page.FillAsync("#size", "64");
        await page.ClickAsync("#generate");
        await page.WaitForSelectorAsync("#erased-image[data-enabled='01'][src^='data:image/png']");
        await page.WaitForFunctionAsync("() => document.getElementById('base-image').complete && document.getElementById('erased-image').complete");
        var baseUrl = await page.GetAttributeAsync("#base-image", "src");
        var erasedUrl = await page.GetAttributeAsync("#erased-image", "src");
        Assert.That(await page.EvaluateAsync<int>("() => document.getElementById('erased-image').naturalWidth"), Is.EqualTo(64),
            "the browser decoded the image");

        var (bw, bh, baseRgb) = DemoServer.DecodeDataUrl(baseUrl!);
        var (ew, eh, erasedRgb) = DemoServer.DecodeDataUrl(erasedUrl!);
        Assert.That((bw, bh, ew, eh), Is.EqualTo((64, 64, 64, 64)));
        // The fixture's weights are random, so its images are noise and the reference SPM moves them by a level or two
        // (about a quarter of the values change); point 4 shows that the change is the membrane's and nothing else.
        Assert.That(erasedRgb, Is.Not.EqualTo(baseRgb), "the erased image differs from the base image");
        Assert.That(DemoServer.Diff(baseRgb, erasedRgb).Changed, Is.GreaterThan(0.05));

        // 4. The images are what the library gives for the same settings: base = every SPM at 0, erased = the first
        //    (unchecked) SPM at 0 and the second gated.
        var off = new GateSettings(FixedMultiplier: 0f);
        Assert.That(baseRgb, Is.EqualTo(await LibraryRgb(prompt, [off, off], seed: 3)), "base image");
        Assert.That(erasedRgb, Is.EqualTo(await LibraryRgb(prompt, [off, GateSettings.Default], seed: 3)), "erased image");
        Assert.That(await page.InnerTextAsync("#erased-caption"), Does.Contain("attn2-rank4/spm.safetensors").And.Not.Contain("all-layers"));
        Assert.That(await page.InnerTextAsync("#status"), Does.Contain("64x64"));
        Assert.That(consoleErrors, Is.Empty);

        // SPM_WEBDEMO_SCREENSHOT=FILE.png keeps a picture of the finished page (for looking at the layout).
        if (Environment.GetEnvironmentVariable("SPM_WEBDEMO_SCREENSHOT") is { Length: > 0 } shot)
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
    }

    private static async Task<byte[]> LibraryRgb(string prompt, GateSettings[] settings, ulong seed)
    {
        var engine = DemoServer.Engine;
        var conditioner = engine.Loaded!.CreateConditioner(engine.Pipeline, settings);
        var result = await engine.Pipeline.GenerateAsync(new GenerationRequest
        {
            Prompt = prompt, Steps = 4, Seed = seed, Width = 64, Height = 64, Conditioner = conditioner,
        });
        return result.Images[0].Rgb;
    }
}
