//go:build windows

package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// checkPrivate checks that the key file exists; its DACL was set when it
// was written (restrictPath).
func checkPrivate(path string) error {
	_, err := os.Stat(path)
	return err
}

// restrictPath replaces path's DACL with a protected one (nothing
// inherited from the parent) that grants full control to the current user
// and to SYSTEM only; a directory passes it on to what it holds.
func restrictPath(path string, dir bool) error {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return fmt.Errorf("restrict %s: current user: %w", path, err)
	}
	system, err := windows.CreateWellKnownSid(windows.WinLocalSystemSid)
	if err != nil {
		return fmt.Errorf("restrict %s: SYSTEM sid: %w", path, err)
	}
	inherit := uint32(windows.NO_INHERITANCE)
	if dir {
		inherit = windows.SUB_CONTAINERS_AND_OBJECTS_INHERIT
	}
	acl, err := windows.ACLFromEntries([]windows.EXPLICIT_ACCESS{
		fullControl(tu.User.Sid, inherit), fullControl(system, inherit),
	}, nil)
	if err != nil {
		return fmt.Errorf("restrict %s: build ACL: %w", path, err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, acl, nil)
	if err != nil {
		return fmt.Errorf("restrict %s: set DACL: %w", path, err)
	}
	return nil
}

func fullControl(sid *windows.SID, inherit uint32) windows.EXPLICIT_ACCESS {
	return windows.EXPLICIT_ACCESS{
		AccessPermissions: windows.GENERIC_ALL,
		AccessMode:        windows.GRANT_ACCESS,
		Inheritance:       inherit,
		Trustee: windows.TRUSTEE{
			TrusteeForm:  windows.TRUSTEE_IS_SID,
			TrusteeValue: windows.TrusteeValueFromSID(sid),
		},
	}
}

// syncDir does nothing: Windows has no directory fsync.
func syncDir(string) {}
