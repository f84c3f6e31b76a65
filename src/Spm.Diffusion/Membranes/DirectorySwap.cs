using System.Runtime.InteropServices;

namespace Spm.Diffusion.Membranes;

/// <summary>
/// Replaces a folder by another one. On Linux both names are exchanged in one <c>renameat2(RENAME_EXCHANGE)</c> call,
/// so a process killed at any moment leaves the old folder or the new one under the destination name, never neither.
/// Elsewhere (or on file systems without the flag) the old folder is first moved aside, which leaves a short window
/// in which the destination name is absent (the old folder then survives under its hidden name).
/// </summary>
internal static partial class DirectorySwap
{
    private const int AtFdCwd = -100;
    private const uint RenameExchange = 2;

    /// <summary>
    /// Puts <paramref name="staging"/> in place of <paramref name="dest"/>. When <paramref name="dest"/> existed, its
    /// old content ends up under <paramref name="aside"/> (the caller deletes it); returns whether it existed.
    /// </summary>
    public static bool Replace(string staging, string dest, string aside)
    {
        bool exists = Directory.Exists(dest) || File.Exists(dest);
        if (!exists)
        {
            Directory.Move(staging, dest);
            return false;
        }
        if (Directory.Exists(dest) && TryExchange(staging, dest))
        {
            // staging now holds the old folder: give it the name the caller deletes.
            Directory.Move(staging, aside);
            return true;
        }
        if (Directory.Exists(dest)) Directory.Move(dest, aside); else File.Move(dest, aside);
        Directory.Move(staging, dest);
        return true;
    }

    /// <summary>Swaps two existing paths in one system call; false where that is not available.</summary>
    internal static bool TryExchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange) == 0;
        }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);
}
