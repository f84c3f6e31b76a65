using System.Runtime.InteropServices;

namespace Spm.Diffusion.Onnx;

/// <summary>Creates hard links (no managed API exists for them): a second name for a data file costs no bytes and no time.</summary>
internal static partial class HardLink
{
    /// <summary>Makes <paramref name="newPath"/> a hard link to <paramref name="existingPath"/>; false when the file system refuses (other device, no support).</summary>
    public static bool TryCreate(string existingPath, string newPath)
    {
        try
        {
            if (OperatingSystem.IsWindows())
                return CreateHardLinkW(newPath, existingPath, IntPtr.Zero);
            return Link(existingPath, newPath) == 0;
        }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string oldPath, string newPath);

    [LibraryImport("kernel32", EntryPoint = "CreateHardLinkW", StringMarshalling = StringMarshalling.Utf16, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool CreateHardLinkW(string fileName, string existingFileName, IntPtr securityAttributes);
}
